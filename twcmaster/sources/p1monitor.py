"""P1 Monitor (ztatz.nl): a smart meter's P1 port read by a Raspberry Pi, over its local HTTP
API (TWCManager's ``P1Monitor`` source).

Config ``sources.P1Monitor`` (TWCManager's keys):

* ``serverIP``: the P1 Monitor's address; twcmaster adds ``serverPort`` (default 80);
* ``samples``: how many of the latest per-phase records to average, 1-10 (default 1).

``GET /api/v1/phase?limit=<samples>&json=object&round=on`` answers a list of records (newest
first) with the per-phase power in watts: ``CONSUMPTION_L1_W``..``L3_W`` (drawn from the
grid) and ``PRODUCTION_L1_W``..``L3_W`` (fed in), and the voltages ``L1_V``..``L3_V``. As
TWCManager does, each phase is averaged over the samples with 10 % trimmed off each end (the
outliers of a 10-sample window), and:

* the generation is the sum of the three production averages: what goes into the grid (a
  P1 meter does not see the panels; set ``config.treatGenerationAsGridDelivery``);
* the consumption is the busiest phase's consumption times the number of phases: 3 when more
  than one phase has a voltage, else 1 (the worst case for a charger on any phase);
* the voltage is the newest record's ``L1_V``.

A record without a field, or with one that is not a number, is an error naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twcmaster.sources.base import Reading, Source, SourceTiming
from twcmaster.sources.http import HttpClient, ShapeError, as_number, base_url
from twcmaster.sources.registry import (
    Problem,
    check_host,
    check_number,
    check_port,
    read_number,
    read_port,
    read_text,
)

PORT = 80
PATH = "/api/v1/phase"
MIN_SAMPLES, MAX_SAMPLES = 1, 10
TRIM = 0.1  # the share cut off each end of the sorted samples
PHASES = ("L1", "L2", "L3")


class P1MonitorSource(Source):
    name = "P1Monitor"

    def __init__(self, config: Mapping[str, Any], timing: SourceTiming) -> None:
        super().__init__(config, timing)
        host = read_text(config, "serverIP") or ""
        self.url = base_url(host, read_port(config, "serverPort", PORT), https=False) + PATH
        self.samples = int(read_number(config, "samples", MIN_SAMPLES))
        self.http = HttpClient(self.name, timing)

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> list[Problem]:
        problems = check_host(config, "serverIP", "the P1 Monitor's IP address or host name")
        problems += check_port(config, "serverPort")
        problems += check_number(config, "samples", minimum=MIN_SAMPLES, maximum=MAX_SAMPLES)
        samples = config.get("samples")
        if not problems and samples is not None and float(samples) != int(float(samples)):
            problems.append(("samples", f"{samples!r}: expected a whole number 1-10"))
        return problems

    def describe(self) -> str:
        return f"P1 Monitor at {self.url}"

    def fetch(self) -> Reading:
        params = {"limit": str(self.samples), "json": "object", "round": "on"}
        return self.http.get_json(self.url, params=params, parse=self._parse)

    def _parse(self, doc: Any) -> Reading:
        if not isinstance(doc, list) or not all(isinstance(r, Mapping) for r in doc):
            raise ShapeError("expected a list of phase records")
        if not doc:
            raise ShapeError("the list of phase records is empty")
        records = doc[: self.samples]

        def average(field: str) -> float:
            return trimmed_mean([_field(r, field, i) for i, r in enumerate(records)])

        consumption = [average(f"CONSUMPTION_{phase}_W") for phase in PHASES]
        production = [average(f"PRODUCTION_{phase}_W") for phase in PHASES]
        volts = [_field(records[0], f"{phase}_V", 0) for phase in PHASES]
        phases = 3 if sum(volts) > max(volts) else 1
        return Reading(
            generation_w=max(0.0, sum(production)),
            consumption_w=max(0.0, max(consumption) * phases),
            voltage_v=volts[0] or None,
        )


def trimmed_mean(values: list[float], cut: float = TRIM) -> float:
    """The mean with ``int(cut * n)`` values cut off each end of the sorted list."""
    ordered = sorted(values)
    drop = int(cut * len(ordered))
    kept = ordered[drop : len(ordered) - drop] if drop else ordered
    return sum(kept) / len(kept)


def _field(record: Mapping[str, Any], field: str, index: int) -> float:
    if field not in record:
        raise ShapeError(f"record {index} has no {field!r}")
    return as_number(record[field], f"[{index}].{field}")
