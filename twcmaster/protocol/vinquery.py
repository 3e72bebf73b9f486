"""The VIN query of one slave (§5.4): named phases, one transition per input (h11 style).

When a slave's car starts drawing at least 1 A, the master asks it for the three VIN parts
(``FB EE`` / ``FB EF`` / ``FB F1``), the next one after each reply. The 17 characters are
checked (ISO 3779 check digit); a bad VIN, or a part left unanswered for
``VIN_UNANSWERED_LIMIT`` requests, ends the sequence, and the next one may start
``retry_s`` later, up to ``max_attempts`` sequences per car. Every part empty means the car
gives no VIN (non-Tesla, CAN off): no more asking. Once the draw has stayed below 1 A for
``VIN_FORGET_AFTER_S``, the car is gone and all of this is forgotten.

``VinQuery`` holds that sequence and decides; it sends nothing and knows no slave. The bus
master feeds it inputs and turns what it returns into frames and events (the reason texts
are the master's). Transitions, phase x input -> next phase ("-": no change):

=================  =============  ==========  ==============  ===============  ============
phase              charging, due  car gone    query slot      part k asked     master stops
=================  =============  ==========  ==============  ===============  ============
NOT_ASKED          ASKING(1)      -           -               - (not asked)    -
ASKING(k)          -              NOT_ASKED   ask part k; the ASKING(k+1);     FAILED
                                              4th time:       after part 3:
                                              FAILED          VIN_KNOWN,
                                                              NO_VIN or FAILED
WAITING_TO_RETRY   ASKING(1)      NOT_ASKED   -               - (not asked)    -
GAVE_UP            -              NOT_ASKED   -               - (not asked)    -
VIN_KNOWN          -              NOT_ASKED   -               - (not asked)    -
NO_VIN             -              NOT_ASKED   -               - (not asked)    -
=================  =============  ==========  ==============  ===============  ============

"charging, due": a heartbeat shows at least 1 A, ``not_before_s`` has passed and fewer than
``max_attempts`` sequences ran for this car. "car gone": the draw stayed below 1 A for
``VIN_FORGET_AFTER_S``. FAILED is WAITING_TO_RETRY while sequences are left for this car,
else GAVE_UP; a sequence that fails on its own (bad check digit, unanswered part) sets
``not_before_s`` = now + ``retry_s``, which also holds for the next car. A stop only ends the
sequence: it leaves ``not_before_s`` as it was. A part other than the one asked (or any part
outside ASKING) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from twcmaster.protocol.messages import VIN_PART_CODES
from twcmaster.protocol.vin import vin_check_digit_ok

VIN_PARTS = len(VIN_PART_CODES)  # FD EE, FD EF, FD F1 (§3.4)
VIN_RETRY_S = 60.0  # start the sequence over this long after it failed (§5.4)
VIN_MAX_ATTEMPTS = 6  # sequences per car: the first try + 5 retries (§5.4)
VIN_UNANSWERED_LIMIT = 3  # requests for one part left unanswered before the sequence fails
VIN_FORGET_AFTER_S = 5.0  # forget the VIN once the draw stayed below 1 A this long (§5.4)


class VinPhase(Enum):
    NOT_ASKED = "not asked"  # no sequence since the slave linked or its last car left
    ASKING = "asking"  # a sequence runs: part ``VinQuery.part`` is asked next
    WAITING_TO_RETRY = "waiting to retry"  # the last sequence ended without a VIN
    GAVE_UP = "gave up"  # ``max_attempts`` sequences ended without a VIN: no more for this car
    VIN_KNOWN = "VIN known"  # a valid VIN arrived: no more asking for this car
    NO_VIN = "no VIN"  # the car gives none (every part empty): no more asking for this car


class PartVerdict(Enum):
    """What a received VIN part did to the sequence."""

    NOT_ASKED_FOR = "not asked for"  # not the part being asked: nothing changed
    STORED = "stored"  # kept; the next part is asked next
    VIN = "VIN"  # the last part, completing a valid VIN
    NO_VIN = "no VIN"  # the last part, every part empty: the car gives no VIN
    BAD_CHECK_DIGIT = "bad check digit"  # the last part, the VIN is invalid: the sequence failed


@dataclass(frozen=True)
class PartAnswer:
    verdict: PartVerdict
    vin: str | None = None  # the VIN put together (VIN, BAD_CHECK_DIGIT)


@dataclass
class VinQuery:
    """The VIN sequence of one slave (mutable; owned by the bus master)."""

    retry_s: float = VIN_RETRY_S
    max_attempts: int = VIN_MAX_ATTEMPTS
    phase: VinPhase = VinPhase.NOT_ASKED
    received: tuple[str, ...] = ()  # the parts this sequence got so far, in order
    attempts: int = 0  # sequences started for this car
    requests_for_part: int = 0  # requests sent for the part being asked
    not_before_s: float = 0.0  # no sequence starts before this (after a failed one)
    below_charging_since_s: float | None = None  # since when the draw is below 1 A

    @property
    def asking(self) -> bool:
        return self.phase is VinPhase.ASKING

    @property
    def part(self) -> int:
        """The part asked next (1..3), while ASKING."""
        return len(self.received) + 1

    # -- inputs

    def on_charging(self, now_s: float) -> None:
        """A heartbeat shows the car drawing at least 1 A."""
        self.below_charging_since_s = None
        waiting = self.phase in (VinPhase.NOT_ASKED, VinPhase.WAITING_TO_RETRY)
        if waiting and now_s >= self.not_before_s and self.attempts < self.max_attempts:
            self.phase = VinPhase.ASKING
            self.received = ()
            self.attempts += 1
            self.requests_for_part = 0

    def on_not_charging(self, now_s: float) -> bool:
        """A heartbeat shows less than 1 A. True when the car is now taken as gone and what
        was known of it forgotten (the master then drops the VIN)."""
        if self.below_charging_since_s is None:
            self.below_charging_since_s = now_s
            return False
        if now_s - self.below_charging_since_s < VIN_FORGET_AFTER_S:
            return False
        return self._on_car_gone()

    def _on_car_gone(self) -> bool:
        if self.phase is VinPhase.NOT_ASKED:
            return False
        self.phase = VinPhase.NOT_ASKED
        self.received = ()
        self.attempts = 0
        return True

    def on_query_slot(self, now_s: float) -> int | None:
        """The master may send this slave a query now: the VIN part to ask for, or None
        when the slave left ``VIN_UNANSWERED_LIMIT`` requests for it unanswered (the
        sequence fails) or no sequence runs."""
        if self.phase is not VinPhase.ASKING:
            return None
        if self.requests_for_part >= VIN_UNANSWERED_LIMIT:
            self._fail(now_s)
            return None
        self.requests_for_part += 1
        return self.part

    def on_part_received(self, part: int, text: str, now_s: float) -> PartAnswer:
        """The slave sent VIN part ``part`` (1..3) carrying ``text``."""
        if self.phase is not VinPhase.ASKING or part != self.part:
            return PartAnswer(PartVerdict.NOT_ASKED_FOR)
        self.received += (text,)
        self.requests_for_part = 0
        if len(self.received) < VIN_PARTS:
            return PartAnswer(PartVerdict.STORED)
        vin = "".join(self.received).upper()
        self.received = ()
        if vin == "":
            self.phase = VinPhase.NO_VIN
            return PartAnswer(PartVerdict.NO_VIN)
        if vin_check_digit_ok(vin):
            self.phase = VinPhase.VIN_KNOWN
            return PartAnswer(PartVerdict.VIN, vin)
        self._fail(now_s)
        return PartAnswer(PartVerdict.BAD_CHECK_DIGIT, vin)

    def on_master_stopping(self) -> None:
        """The master is stopping: no more requests (the retry time stays as it was)."""
        if self.phase is VinPhase.ASKING:
            self._end_without_vin()

    # -- shared steps

    def _fail(self, now_s: float) -> None:
        self.not_before_s = now_s + self.retry_s
        self._end_without_vin()

    def _end_without_vin(self) -> None:
        self.received = ()
        left = self.attempts < self.max_attempts
        self.phase = VinPhase.WAITING_TO_RETRY if left else VinPhase.GAVE_UP
