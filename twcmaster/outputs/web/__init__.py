"""The web page (``/`` on the HTTP API's server): live status, today's chart and the controls,
from the one ``Snapshot``; plain HTML, CSS and a small script in ``static/``, no build step.
``page.py`` serves it, ``history.py`` keeps the chart."""

from twcmaster.outputs.web.page import WebPage

__all__ = ["WebPage"]
