"""The bounds config.json values are checked against: what a Gen2 TWC and a bus can take, and
beyond which a value can only be a typo (a limit of 1e308 A would make every check pass)."""

from __future__ import annotations

TWC_MIN_AMPS = 5  # lowest current a Gen2 TWC accepts (protocol v1; v2 says 6)
TWC_MAX_AMPS = 80  # highest current a Gen2 TWC delivers (a 100 A breaker x 0.8)
MAX_TWCS = 6  # slaves one master can hold on the bus
MAX_AMPS_ALL_TWCS = MAX_TWCS * TWC_MAX_AMPS  # 480 A: beyond it a limit is a typo
MAX_WAIT_S = 86400.0  # s; a day: a longer delay, latch or timeout is a typo
MAX_BAUD = 4_000_000  # beyond any RS-485 adapter
MAX_PRIORITY = 1000  # chargePriority (config.json or set at run time): -1000 to 1000
