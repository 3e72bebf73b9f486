"""Steering from outside: ``commands`` is the one validated path for every change (MQTT
control in ``mqtt``, the HTTP API in ``outputs/http.py``, the web page)."""
