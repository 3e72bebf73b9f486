"""The amps gate: the one place that decides the amps a heartbeat carries (§6.5, §6.6).

Every amp value that reaches the wire passes through ``wire_amps``, called by the bus master
when it builds a heartbeat, and nowhere else (a structure test checks that no other code
builds a master heartbeat). Whatever the controller or policy asked for, and whatever state
they are in, the value sent is:

* never above the per-TWC wiring limit, nor the slave's own maximum (its link-ready);
* never more than what the all-TWC wiring limit leaves once every other slave's committed
  amps are counted: the larger of what we last sent it and what it reports as allowed (a
  slave keeps drawing up to its old limit until it has acknowledged a lower one);
* 0, or at least the floor (``minAmpsPerTWC``, and ``protocol_min_amps``: 5 A on protocol 1,
  6 A on protocol 2, §6.1): never a value in between, which cars handle badly;
* 0 while the master is stopping.

The controller already keeps to these limits (``control/allocation.py``, checked as
properties); the gate is the last line, so that no bug above it can put more on the wire.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from twcmaster.protocol.messages import CENTIAMPS_PER_AMP

MIN_AMPS_P1 = 5  # A; the lowest offer a protocol 1 slave accepts (minAmpsTWCSupports, §6.1)
MIN_AMPS_P2 = 6  # A; on protocol 2, and whenever the protocol is unknown (§6.1)


def protocol_min_amps(protocol: int) -> int:
    """The lowest offer (A) a slave speaking ``protocol`` accepts: 5 on 1, else 6 (§6.1)."""
    return MIN_AMPS_P1 if protocol == 1 else MIN_AMPS_P2


@dataclass(frozen=True)
class WiringLimits:
    """The circuit's limits, from the config (amps)."""

    max_amps_per_twc: float | None = None  # wiringMaxAmpsPerTWC
    max_amps_all_twcs: float | None = None  # wiringMaxAmpsAllTWCs
    min_amps_per_twc: float = 0.0  # minAmpsPerTWC: an offer is 0 or at least this


@dataclass(frozen=True)
class GateInput:
    """One slave as the gate sees it."""

    requested_amps: int  # what the controller wants it to have
    max_centiamps: int  # the slave's own maximum (link-ready)
    protocol_min_amps: int  # protocol_min_amps(its protocol) (§6.1)


def committed_centiamps(sent_centiamps: int, allowed_centiamps: int) -> int:
    """What a slave may draw now: it keeps its old limit until it acknowledges a lower one."""
    return max(sent_centiamps, allowed_centiamps)


def wire_amps(
    slave: GateInput,
    others_committed_centiamps: Iterable[int],
    limits: WiringLimits,
    *,
    stopping: bool = False,
) -> int:
    """The whole amps to put in this slave's heartbeat."""
    if stopping:
        return 0
    ceiling = min(slave.requested_amps, slave.max_centiamps // CENTIAMPS_PER_AMP)
    if limits.max_amps_per_twc is not None:
        ceiling = min(ceiling, math.floor(limits.max_amps_per_twc))
    if limits.max_amps_all_twcs is not None:
        others_amps = sum(others_committed_centiamps) / CENTIAMPS_PER_AMP
        ceiling = min(ceiling, math.floor(limits.max_amps_all_twcs - others_amps))
    floor = max(limits.min_amps_per_twc, slave.protocol_min_amps)
    return ceiling if ceiling >= floor else 0
