"""Allocation controller: turns a budget (amps the policy allows) into one offer per slave.

Sans-I/O: the caller passes the readings and the monotonic time; nothing here sleeps, reads a
clock or touches the bus. ``Controller.allocate`` is called about once a second (the daemon calls
it after every heartbeat exchange) with every linked slave, and keeps a little history per slave.

One call runs four steps, each of which can only narrow what the step before it chose:

1. **Plan** (policy level, §6.2 + the rules below): who is served, and how much.
   * A slave *wants current* when its car draws (>= 1 A, debounced 5 s to end a session) or its
     state asks for an allocation (anything but 0 ready/idle and 2 error).
   * Serve as many wanting slaves as the budget allows at their minimum, charging cars first,
     then lowest TWCID (rule 4, users' issue #480: TWCManager dropped them all to 0).
   * Cars that charge share the budget evenly (water-filling: a slave capped by its own limit
     leaves the rest to the others; left-over whole amps go one each in priority order).
   * A wanting slave that does not draw yet gets its minimum so the car can start, plus any
     budget the charging cars cannot use. Its minimum is reserved from the *wiring* but not
     taken from the charging cars' budget, because it draws nothing until it starts (what
     TWCManager does, §6.2 step 4). The budget is therefore a consumption target: when such
     a car starts, the total draw may exceed the budget by up to its minimum until the others
     have been lowered (a few seconds). The wiring limits are never exceeded.
   * Stop hold (startStopDelay, §6.3): a charging car that the budget would cut to 0 keeps
     its minimum while it started less than ``stop_hold_s`` ago (beyond the budget, never
     beyond the wiring); so does a car offered current less than ``stop_hold_s`` ago that
     may still be starting (a cut during the start negotiation may leave it in error).
   * ``max_cars`` (Track Green Energy's start rules for a second or third car): at most that
     many slaves are served within the budget.
   * Stop through the car (``SlaveReading.stop_through_car``, protocol 2 with a car API,
     ``carcommands.py``): a charging car the budget cuts to 0 keeps its minimum in the same
     way until it has stopped drawing, and its offer says ``car_stop_wanted``.
2. **Shape** (per slave): the spike workaround (§6.4) and the 5 s lower hold (§6.3). A spike
   is held at least 5 s whatever ``lower_hold_s`` says, and may only use wiring headroom that
   the other slaves' plans leave spare.
3. **Gate** (strict wiring, no overshoot): a slave's *committed amps* is the largest limit it
   may still apply: max(previous offer, this call's offer, reported allowed amps). A slave's
   offer may go up only if ``offer + sum(committed of every other slave) <=
   wiring_max_amps_all_twcs``; otherwise it goes up as far as that allows (if that is at least
   its minimum) or waits. Re-sharing therefore lowers the others first and raises once they
   have acknowledged the lower limit (S1-S2). Decreases never need the gate.
4. **Check** (defence in depth): the per-slave and all-TWC limits once more.

Assumption: a slave's S1-S2 in the reply to a heartbeat reflects the limit that heartbeat
carried (§4.1: the slave "echoes the value"), so an offer is in flight for at most one call.

Deliberate differences from TWCManager: no overshoot of the wiring limits (§6.2 step 4,
§6.5 step 1); budget clamped to [0, wiringMaxAmpsAllTWCs]; a slave whose link-ready maximum is
below wiringMaxAmpsPerTWC is capped at that maximum (not at maximum / 4, §6.5 step 3); idle and
error slaves get 0; as many cars as the budget allows keep charging when it is short; never an
offer between 0 and minAmpsPerTWC (TM offers minAmpsTWCSupports there); the proactive spike
needs a raise over both S1-S2 and our last offer, from the 6 A setting (or 0) only; the reactive
spike fires once per episode;
a forgotten slave's limit keeps counting for FORGOTTEN_HOLD_S.

Section numbers refer to ``shared/protocol/twc-rs485.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from twcmaster.numbers import finite_or, non_negative
from twcmaster.protocol.gate import protocol_min_amps
from twcmaster.quickinit import quick_init

# --- protocol facts -----------------------------------------------------------------------------
STATE_READY = 0  # S0 ready / idle: car may or may not be plugged in (§4.2)
STATE_ERROR = 2  # S0 error: the slave gets 0 (rule 6)
MAX_REPORTED_AMPS = 655.35  # A; the most a u16 centiamp S1-S2 can say (§4.2)

# --- spike workaround (§6.4) --------------------------------------------------------------------
SPIKE_AMPS_NA = 21  # A; spike value when the link-ready max is >= SPIKE_NA_LINK_MAX_AMPS
SPIKE_AMPS_EU = 16  # A; otherwise (forum report, untested)
SPIKE_NA_LINK_MAX_AMPS = 80.0  # A; link-ready max of a North-American unit
SPIKE_HOLD_S = 5.0  # s; offer the spike at least this long (3 s was not enough)
SPIKE_RETRY_S = 10.0  # s; a spike held longer than this retries at spike - SPIKE_STEP_AMPS
SPIKE_STEP_AMPS = 2  # A; "spike - 2 A" frees a car that got stuck at 6 A after a spike
REACTIVE_MIN_ACTUAL_AMPS = 2.0  # A; reactive trigger: the car draws more than this ...
REACTIVE_GAP_AMPS = 2.0  # A; ... and more than this below our offer ...
REACTIVE_STUCK_S = 10.0  # s; ... and its draw has not moved significantly for this long
SIGNIFICANT_CHANGE_AMPS = 0.8  # A; "significant change" of the actual current (§6.3)
PROACTIVE_FROM_AMPS = 6.0  # A; the proactive spike is for raises from the 6 A setting (or 0)

# --- after forget() -----------------------------------------------------------------------------
# A slave we stop talking to keeps applying its last limit until it notices: it drops the
# charge about 30 s after the heartbeats stop (§5.1). Its committed amps keep counting against
# the others' raises this long after it was last passed to allocate().
FORGOTTEN_HOLD_S = 35.0  # s; 30 s plus a margin

# --- cars that do not draw (full, or waiting for their own schedule) ------------------------------
# Offered at least its minimum this long without drawing, a car is taken as not wanting current:
# it is served last and reserves nothing (no place among the cars the budget admits), so the
# others are not kept waiting behind a full battery. Long enough for a car that sleeps to wake
# and negotiate (the car API waits wakeDelayS before it wakes one).
NOT_DRAWING_S = 180.0  # s
NOT_DRAWING_RETRY_S = 1800.0  # s; after this it is tried again in its turn (its SoC may drop)
MAX_ENERGY_STEP_S = 10.0  # s; longer gaps between calls add no energy (the bus was silent)
# Which waiting car starts next: each start it made today counts as this fraction of the
# rotation's energy (rotate_amp_s), so that on a broken day the starts (relay cycles, API
# calls) are spread over the cars rather than all made by the one that charged least.
START_WEIGHT = 0.25

_EPS = 1e-9  # A; tolerance for sums of centiamp floats


@dataclass(frozen=True)
class AllocationSettings:
    wiring_max_amps_all_twcs: int
    wiring_max_amps_per_twc: int
    min_amps_per_twc: int = 12  # the user's floor (TWCManager minAmpsPerTWC)
    spike_amps_proactively: bool = True
    spike_amps_reactively: bool = True
    spike_amps: int | None = None  # None: 21 if the slave's link-ready max >= 80 A else 16
    lower_hold_s: float = 5.0  # no decrease sooner than this after the last raise (but safety)
    stop_hold_s: float = 60.0  # startStopDelay: keep a car that just started at its minimum
    charging_threshold_amps: float = 1.0
    charging_debounce_s: float = 5.0
    #: Rotation (fair by energy today): a waiting car takes the place of a charging car of the
    #: same priority once the charging car has drawn this many amp-seconds more today. None:
    #: never (the charging car keeps its place until it stops).
    rotate_amp_s: float | None = None
    # How a car held for stop_through_car is being stopped (for the offer's reason).
    car_stop_by: str = "asked through its API"

    def __post_init__(self) -> None:
        for name in ("wiring_max_amps_all_twcs", "wiring_max_amps_per_twc", "min_amps_per_twc"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected whole amps >= 0, got {value!r}")
        if self.spike_amps is not None and (
            isinstance(self.spike_amps, bool)
            or not isinstance(self.spike_amps, int)
            or self.spike_amps < 1
        ):
            spike = self.spike_amps
            raise ValueError(f"spike_amps: expected None or whole amps >= 1, got {spike!r}")
        rotate = self.rotate_amp_s
        if rotate is not None and not (isinstance(rotate, int | float) and 0 < rotate < math.inf):
            raise ValueError(f"rotate_amp_s: expected None or amp-seconds > 0, got {rotate!r}")
        for name in ("lower_hold_s", "stop_hold_s", "charging_debounce_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < math.inf):
                raise ValueError(f"{name}: expected seconds >= 0, got {value!r}")
        threshold = self.charging_threshold_amps
        if not (isinstance(threshold, int | float) and 0 < threshold < math.inf):
            raise ValueError(f"charging_threshold_amps: expected amps > 0, got {threshold!r}")


@quick_init
@dataclass(frozen=True)
class SlaveReading:
    """What the bus master knows of one linked slave."""

    twcid: int
    protocol: int  # 1 or 2 (minimum the TWC supports: 5 A on P1, 6 A on P2)
    link_max_amps: float  # max amps from its link-ready
    state: int  # S0 of its last heartbeat (0 idle, 1 charging, 2 error, 3, 4, 8 ... §4.2)
    reported_allowed_amps: float  # S1-S2: the limit the slave last accepted
    actual_amps: float  # S3-S4: what the car draws
    #: A 0 A offer does not stop this car (protocol 2, §6.7) but the car API can: when the
    #: budget drops it, keep its minimum (within the wiring) until the car has stopped.
    stop_through_car: bool = False
    #: Who goes first when the budget carries fewer cars than want current (higher first;
    #: config chargePriority by TWCID or VIN). Equal priorities: the least energy today.
    priority: int = 0


@quick_init
@dataclass(frozen=True)
class Offer:
    twcid: int
    offer_amps: int  # whole amps; 0 or >= the effective minimum
    desired_amps: float  # the plan's amount (step 1), before spike, hold and wiring gate
    reason: str  # short and human: which rule decided offer_amps
    car_stop_wanted: bool = False  # kept at its minimum only until the car API stops it
    held: bool = False  # served beyond the budget: a stop/start hold or a stop through the car


@dataclass
class _Track:
    """History of one slave between calls."""

    last_offer: int | None = None  # None: never offered
    last_change_s: float | None = None  # when last_offer last changed
    last_raise_s: float | None = None  # when last_offer last went up
    on_since_s: float | None = None  # when the offer last went from 0 to > 0
    reported_amps: float = 0.0
    last_seen_s: float | None = None
    sig_ref_amps: float | None = None  # actual amps at the last significant change
    sig_change_s: float | None = None
    last_drawing_s: float | None = None  # last time actual >= charging threshold
    session_start_s: float | None = None  # when the debounced charging session began
    charging: bool = False
    spiked: bool = False  # last_offer is a spike (held SPIKE_HOLD_S whatever lower_hold_s)
    reactive_spike_s: float | None = None  # when the reactive trigger last spiked
    amp_s_today: float = 0.0  # amps drawn x seconds since new_day(): fairness by energy
    starts_today: int = 0  # charging sessions begun since new_day()
    idle_offer_since_s: float | None = None  # offered its minimum or more, not drawing, since
    not_drawing: bool = False  # offered long enough without drawing: full, or not wanting


@dataclass
class _Work:
    """Facts and decisions about one slave during one call."""

    reading: SlaveReading
    track: _Track
    cap: int  # min(per-TWC wiring, floor(link max), all-TWC wiring)
    cap_name: str  # which limit makes the cap, for reasons
    min_amps: int
    actual: float
    reported: float  # sanitised S1-S2
    prev: int  # previous offer, 0 if none
    charging: bool
    wants: bool
    error: bool
    key: tuple[int, int, float, int]  # who is served first: see _order_key
    not_drawing: bool = False  # offered NOT_DRAWING_S without drawing: reserves nothing
    swap_in: bool = False  # taking a charging car's place (rotation): served while it starts
    target: int = 0  # step 1
    reason: str = ""
    stop_held: bool = False
    car_stop: bool = False  # stop_held while the car API stops it (not the startStopDelay)
    cand: int = 0  # step 2
    cand_reason: str = ""
    fallback: int | None = None  # plain target to try when a spike does not fit
    spike: bool = False  # cand is a spike value
    reactive: bool = False  # ... chosen by the reactive trigger
    new: int | None = None  # step 3

    def valid(self, amps: int) -> bool:
        """0, or between the minimum and the cap."""
        return amps == 0 or self.min_amps <= amps <= self.cap

    def committed(self, ghost: float) -> float:
        new = self.new if self.new is not None else 0
        return max(float(self.prev), float(new), self.reported, ghost)


class Controller:
    """Per-slave offers from a budget; see the module docstring for the rules."""

    def __init__(self, settings: AllocationSettings):
        self._settings = settings
        self._tracks: dict[int, _Track] = {}
        # twcid -> (committed amps, expiry time or None until the next call fixes it)
        self._ghosts: dict[int, tuple[float, float | None]] = {}
        # Rotations under way: the charging car giving its place -> the car taking it.
        self._swaps: dict[int, int] = {}

    @property
    def settings(self) -> AllocationSettings:
        return self._settings

    def min_offer_amps(self, protocol: int) -> int:
        """The effective minimum: max(the user's floor, 5 A on P1 / 6 A on P2)."""
        return max(self._settings.min_amps_per_twc, protocol_min_amps(protocol))

    def new_day(self) -> None:
        """Local midnight: the energy each car drew today starts again from 0."""
        for track in self._tracks.values():
            track.amp_s_today, track.starts_today = 0.0, 0

    def energy_today_amp_s(self, twcid: int) -> float:
        """Amps x seconds this slave's car drew since ``new_day()`` (0 if unknown)."""
        track = self._tracks.get(twcid)
        return track.amp_s_today if track is not None else 0.0

    def forget(self, twcid: int) -> None:
        """The slave timed out or was removed: drop its history.

        Its committed amps keep counting against the others' raises for FORGOTTEN_HOLD_S
        after it was last passed to allocate(), since it may still apply its last limit.
        """
        track = self._tracks.pop(twcid, None)
        if track is None:
            return
        committed = max(float(track.last_offer or 0), track.reported_amps)
        if committed > 0:
            expiry = None if track.last_seen_s is None else track.last_seen_s + FORGOTTEN_HOLD_S
            self._ghosts[twcid] = (committed, expiry)

    def allocate(
        self,
        budget_amps: float,
        slaves: Sequence[SlaveReading],
        now_s: float,
        max_cars: int | None = None,
        spikes: bool = True,
    ) -> dict[int, Offer]:
        """One offer per slave in ``slaves``. ``now_s``: monotonic seconds. ``max_cars``: serve
        at most this many cars within the budget (the green start rules; None: no limit).
        ``spikes``: False while the budget is a fail-safe value (the energy reading is stale):
        the 6 A spike workaround (§6.4) offers more than the budget for a few seconds, and
        with no reading there is no telling what that costs. A car may then stay at 6 A.

        A remembered slave missing from ``slaves`` (not forgotten) gets no offer, but its
        committed amps still count against the others' raises.
        """
        now = float(now_s)
        if math.isnan(now):
            raise ValueError("now_s is NaN")
        ids = [reading.twcid for reading in slaves]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate twcid in slaves: {ids}")
        wiring = self._settings.wiring_max_amps_all_twcs
        budget = _clamp_budget(budget_amps, wiring)
        self._age_ghosts(now)

        work = [self._observe(reading, now) for reading in slaves]
        self._rotate(work, budget, max_cars)
        order = sorted(work, key=lambda w: w.key)
        self._plan(order, budget, now, max_cars)
        for w in order:
            self._shape(w, now, spikes)
        self._gate(order, set(ids))
        self._check(order)
        return {w.reading.twcid: self._record(w, now) for w in work}

    # -- step 0: readings and history --------------------------------------------------------------

    def _observe(self, reading: SlaveReading, now: float) -> _Work:
        s = self._settings
        track = self._tracks.get(reading.twcid)
        if track is None:  # (not setdefault: that would build a _Track at every call)
            track = self._tracks[reading.twcid] = _Track()
        actual = non_negative(reading.actual_amps)
        if track.last_seen_s is not None and 0 < now - track.last_seen_s <= MAX_ENERGY_STEP_S:
            track.amp_s_today += actual * (now - track.last_seen_s)

        drawing = actual >= s.charging_threshold_amps
        if drawing:
            track.last_drawing_s = now
        charging = drawing or (
            track.last_drawing_s is not None and now - track.last_drawing_s < s.charging_debounce_s
        )
        if charging and not track.charging:
            track.session_start_s = now
            track.starts_today += 1
        track.charging = charging

        if track.sig_ref_amps is None or abs(actual - track.sig_ref_amps) > SIGNIFICANT_CHANGE_AMPS:
            track.sig_ref_amps = actual
            track.sig_change_s = now

        # Garbage S1-S2 is read as "the most it could be applying" (fail safe).
        reported = finite_or(reading.reported_allowed_amps, MAX_REPORTED_AMPS)
        reported = min(max(reported, 0.0), MAX_REPORTED_AMPS)
        track.reported_amps = reported
        track.last_seen_s = now

        link_max = math.floor(finite_or(reading.link_max_amps, 0.0))
        cap, cap_name = s.wiring_max_amps_per_twc, "wiringMaxAmpsPerTWC"
        if link_max < cap:
            cap, cap_name = max(link_max, 0), "its link-ready max"
        if s.wiring_max_amps_all_twcs < cap:
            cap, cap_name = s.wiring_max_amps_all_twcs, "wiringMaxAmpsAllTWCs"

        error = reading.state == STATE_ERROR
        wants = not error and (charging or reading.state != STATE_READY)
        min_amps = self.min_offer_amps(reading.protocol)
        not_drawing = self._not_drawing(track, wants and not charging, now, min_amps)
        priority = reading.priority if isinstance(reading.priority, int) else 0
        return _Work(
            reading=reading,
            track=track,
            cap=cap,
            cap_name=cap_name,
            min_amps=min_amps,
            actual=actual,
            reported=reported,
            prev=track.last_offer or 0,
            charging=charging,
            wants=wants,
            error=error,
            key=self._order_key(track, charging, not_drawing, priority, reading.twcid),
            not_drawing=not_drawing,
        )

    def _order_key(
        self, track: _Track, charging: bool, not_drawing: bool, priority: int, twcid: int
    ) -> tuple[int, int, float, int]:
        """Who is served first: cars that charge (higher priority, then the lowest TWCID: a
        stable order, whatever they draw), then cars that wait (higher priority, then the
        least energy today, each start today counting as START_WEIGHT of the rotation's
        energy: fair, and the starts spread over the cars), then cars that do not draw.
        Fairness among charging cars is the rotation's (``_rotate``): an order by energy
        would swap them at every call."""
        if charging:
            return (0, -priority, 0.0, twcid)
        rotate = self._settings.rotate_amp_s or 0.0
        owed = track.amp_s_today + START_WEIGHT * rotate * track.starts_today
        return (2 if not_drawing else 1, -priority, owed, twcid)

    def _not_drawing(self, track: _Track, idle: bool, now: float, min_amps: int) -> bool:
        """Whether a car that wants current but does not draw is taken as not wanting it: it
        was offered its minimum or more for NOT_DRAWING_S without drawing. It stays so until
        it draws, leaves (idle or error), or NOT_DRAWING_RETRY_S have passed."""
        offered = (track.last_offer or 0) >= min_amps
        if not idle:
            track.idle_offer_since_s, track.not_drawing = None, False
        elif track.not_drawing:
            assert track.idle_offer_since_s is not None
            if now - track.idle_offer_since_s >= NOT_DRAWING_S + NOT_DRAWING_RETRY_S:
                track.idle_offer_since_s, track.not_drawing = None, False
        elif offered:
            if track.idle_offer_since_s is None or track.idle_offer_since_s > now:
                track.idle_offer_since_s = now
            track.not_drawing = now - track.idle_offer_since_s >= NOT_DRAWING_S
        else:
            track.idle_offer_since_s = None
        return track.not_drawing

    # -- rotation: fair by energy today, or a car of higher priority ------------------------------

    def _rotate(self, work: list[_Work], budget: int, max_cars: int | None) -> None:
        """Let a waiting car take a charging car's place when the green start rules have no
        room for both: a car of higher priority at once, one of the same priority once the
        charging car has drawn ``rotate_amp_s`` more today. Only when the budget feeds both
        minimums. The new car is offered its minimum beside the other while it starts (the
        other keeps the surplus meanwhile: nothing is lost during the car's start); once it
        draws, the car giving its place is served behind it until it has stopped drawing (its
        API may take a while)."""
        if max_cars is None and not self._swaps:
            return  # not green tracking, nothing under way
        by_id = {w.reading.twcid: w for w in work}
        for out_id, in_id in list(self._swaps.items()):
            out, into = by_id.get(out_id), by_id.get(in_id)
            if out is None or not out.charging or into is None or into.not_drawing:
                del self._swaps[out_id]  # done (it stopped), or the new car did not start
            elif into.charging:
                out.key = (1, out.key[1], out.track.amp_s_today, out_id)
            else:
                into.swap_in = True
        rotate = self._settings.rotate_amp_s
        if max_cars is None or self._swaps:
            return
        charging = sorted((w for w in work if w.key[0] == 0), key=lambda w: w.key)
        waiting = sorted((w for w in work if w.key[0] == 1 and w.wants), key=lambda w: w.key)
        if len(charging) < max_cars or not charging or not waiting:
            return
        out, into = charging[-1], waiting[0]
        prio_out, prio_in = -out.key[1], -into.key[1]
        gap = out.track.amp_s_today - into.track.amp_s_today
        fair = prio_in == prio_out and rotate is not None and gap >= rotate
        if (prio_in > prio_out or fair) and budget >= out.min_amps + into.min_amps:
            self._swaps[out.reading.twcid] = into.reading.twcid
            into.swap_in = True

    def _age_ghosts(self, now: float) -> None:
        for twcid, (amps, expiry) in list(self._ghosts.items()):
            if expiry is None:
                self._ghosts[twcid] = (amps, now + FORGOTTEN_HOLD_S)
            elif now >= expiry:
                del self._ghosts[twcid]

    # -- step 1: plan ------------------------------------------------------------------------------

    def _plan(self, order: list[_Work], budget: int, now: float, max_cars: int | None) -> None:
        wanting = [w for w in order if not w.not_drawing]
        charging, waiting = self._serve(wanting, budget, now, max_cars)
        self._share_among_charging(charging, waiting, budget, now)
        self._share_among_waiting(waiting, charging, budget)
        self._serve_not_drawing([w for w in order if w.not_drawing], wanting, budget)

    def _serve_not_drawing(self, idle: list[_Work], others: list[_Work], budget: int) -> None:
        """Cars offered current for NOT_DRAWING_S without drawing (full, or waiting for their
        own schedule) reserve nothing: their minimum only from what the others leave of both
        the budget and the wiring, so that they may resume; else 0."""
        wiring = self._settings.wiring_max_amps_all_twcs
        used = sum(w.target for w in others)
        for w in idle:
            spare = min(budget, wiring) - used
            if w.min_amps <= min(spare, w.cap):
                w.target, used = w.min_amps, used + w.min_amps
                w.reason = f"minimum {w.target}A, spare: not drawing when offered current"
            else:
                w.target = 0
                w.reason = "not drawing when offered current (full?): reserves nothing, 0"

    def _serve(
        self, order: list[_Work], budget: int, now: float, max_cars: int | None
    ) -> tuple[list[_Work], list[_Work]]:
        """Who is served, in priority order: (charging, waiting to start). The others get 0
        here, with the reason."""
        wiring = self._settings.wiring_max_amps_all_twcs
        charging: list[_Work] = []
        waiting: list[_Work] = []
        minimums = 0  # of every served slave, in priority order
        admitted = 0  # slaves served within the budget
        for w in order:
            room_for_a_car = max_cars is None or admitted < max_cars or w.swap_in
            if w.error:
                w.target, w.reason = 0, "error (state 2): 0"
            elif not w.wants:
                # Idle gets 0 even when spare headroom remains, as from a real master (§4.2
                # DV table). A car plugged into it announces itself within a second or two
                # (state 3/4/8 with S1-S2 = 0) and is served then; an offer parked on an idle
                # slave would be committed amps that every other raise has to wait for (lower
                # hold, then an acknowledgement), a worse delay than the one it would save.
                w.target, w.reason = 0, "idle (state 0, not drawing): 0"
            elif w.cap < w.min_amps:
                w.target = 0
                w.reason = f"{w.cap_name} {w.cap}A is below the minimum {w.min_amps}A: 0"
            elif minimums + w.min_amps <= budget and room_for_a_car:
                minimums += w.min_amps
                admitted += 1
                (charging if w.charging else waiting).append(w)
            elif minimums + w.min_amps <= wiring and self._stop_hold_left(w, now):
                # Served beyond the budget: no other car fits after this one.
                minimums += w.min_amps
                w.stop_held = True
                charging.append(w)
            elif (
                w.charging
                and w.reading.stop_through_car
                and w.prev > 0
                and minimums + w.min_amps <= wiring
            ):
                # A power cut would not stop it cleanly (§6.7): its minimum, beyond the budget
                # but never the wiring, until the car API has stopped it.
                minimums += w.min_amps
                w.stop_held = w.car_stop = True
                charging.append(w)
            elif not room_for_a_car and minimums + w.min_amps <= budget:
                w.target = 0
                w.reason = f"the green start rules admit {max_cars} car(s) for now: 0"
            else:
                w.target = 0
                w.reason = f"budget {budget}A has no room for another {w.min_amps}A minimum: 0"
        return charging, waiting

    def _share_among_charging(
        self, charging: list[_Work], waiting: list[_Work], budget: int, now: float
    ) -> None:
        """The budget, evenly among the cars that draw (each at least its minimum)."""
        wiring = self._settings.wiring_max_amps_all_twcs
        waiting_min = sum(w.min_amps for w in waiting)
        room = min(
            budget - sum(w.min_amps for w in charging),  # the budget is for cars that draw
            wiring - sum(w.min_amps for w in charging) - waiting_min,  # wiring covers all
        )
        level = _water_fill(charging, max(room, 0))
        for w in charging:
            if w.car_stop:
                by = self._settings.car_stop_by
                w.reason = f"minimum {w.target}A until the car stops ({by})"
            elif w.stop_held:
                left = self._stop_hold_left(w, now)
                w.reason = f"stop hold: minimum {w.target}A for {left:.0f}s more"
            elif w.target == w.cap and level >= w.cap:
                w.reason = f"fair share capped at {w.cap}A by {w.cap_name}"
            else:
                cars = f"{len(charging)} car{'s' if len(charging) > 1 else ''}"
                w.reason = f"fair share {w.target}A of {budget}A among {cars}"

    def _share_among_waiting(
        self, waiting: list[_Work], charging: list[_Work], budget: int
    ) -> None:
        """Cars that do not draw yet: their minimum, plus what the charging cars leave."""
        waiting_min = sum(w.min_amps for w in waiting)
        spare = budget - sum(w.target for w in charging) - waiting_min
        level = _water_fill(waiting, max(spare, 0))
        for w in waiting:
            state = w.reading.state
            if w.target == w.min_amps:
                w.reason = f"minimum {w.target}A to start (state {state}, not drawing yet)"
            elif w.target == w.cap and level >= w.cap:
                w.reason = f"unused budget, capped at {w.cap}A by {w.cap_name} (state {state})"
            else:
                w.reason = f"{w.target}A of unused budget (state {state}, not drawing yet)"

    def _stop_hold_left(self, w: _Work, now: float) -> float:
        """Seconds the stop hold still keeps this slave at its minimum, else 0: a car that
        charges, or one we offered current that may still be starting (§6.3: cutting the
        power during the car's start negotiation may leave it in an error state)."""
        track = w.track
        if w.prev <= 0:
            return 0.0
        starts = [track.on_since_s]
        if w.charging:
            starts.append(track.session_start_s)
        known = [t for t in starts if t is not None]
        if not known:
            return 0.0
        return max(self._settings.stop_hold_s - (now - max(known)), 0.0)

    # -- step 2: spike and lower hold --------------------------------------------------------------

    def _shape(self, w: _Work, now: float, spikes: bool) -> None:
        s = self._settings
        w.cand, w.cand_reason = w.target, w.reason
        track = w.track
        since = math.inf if track.last_change_s is None else now - track.last_change_s

        spike = self._spike_amps(w) if spikes else None
        proactive, reactive = self._spike_triggers(w, spike, now)
        # No spike for a car held at its minimum beyond the budget: it is on its way out.
        if w.target > 0 and spike is not None and (proactive or reactive) and not w.stop_held:
            if w.prev == spike and since > SPIKE_RETRY_S and spike - SPIKE_STEP_AMPS >= w.min_amps:
                w.cand = spike - SPIKE_STEP_AMPS
                w.cand_reason = f"spike-2 {w.cand}A (still stuck after spike {spike}A)"
                w.fallback, w.spike, w.reactive = w.target, True, not proactive
            elif since > SPIKE_HOLD_S:
                w.cand, w.cand_reason = spike, f"spike {spike}A"
                w.fallback, w.spike, w.reactive = w.target, True, not proactive
            elif w.prev < w.target and w.valid(w.prev):  # the raise waits for the spike
                w.cand = w.prev
                w.cand_reason = f"spike {spike}A due in {SPIKE_HOLD_S - since:.0f}s; kept {w.prev}A"

        if w.cand < w.prev and not w.error and w.valid(w.prev):
            # The hold damps a raise followed at once by a lower (a surplus hovering at an amp
            # boundary); a lower that follows a lower (a falling surplus) goes through.
            since_raise = math.inf if track.last_raise_s is None else now - track.last_raise_s
            if since_raise < s.lower_hold_s:
                w.cand_reason = f"held {s.lower_hold_s:g}s before lowering to {w.cand}A"
            elif track.spiked and since < SPIKE_HOLD_S:
                w.cand_reason = f"spike held {SPIKE_HOLD_S:g}s before lowering to {w.cand}A"
            else:
                return
            w.cand, w.fallback, w.spike = w.prev, None, False

    def _spike_amps(self, w: _Work) -> int | None:
        """This slave's spike value, or None when it cannot be offered (above cap, below min)."""
        s = self._settings
        if not (s.spike_amps_proactively or s.spike_amps_reactively):
            return None
        spike = s.spike_amps
        if spike is None:
            link_max = finite_or(w.reading.link_max_amps, 0.0)
            spike = SPIKE_AMPS_NA if link_max >= SPIKE_NA_LINK_MAX_AMPS else SPIKE_AMPS_EU
        return spike if w.valid(spike) and spike > 0 else None

    def _spike_triggers(self, w: _Work, spike: int | None, now: float) -> tuple[bool, bool]:
        """(proactive, reactive): whether each spike trigger of §6.4 fires."""
        s = self._settings
        if spike is None:
            return False, False
        track = w.track
        # A raise below the spike value, over both what the slave reports and our last offer
        # (TM compares with S1-S2, DV with the last offer; a lagging S1-S2 must not turn a
        # decrease into a spike).
        # Only from the 6 A setting, where the bug leaves cars (§6.4: "stuck at the 6 A
        # setting"): a raise from 10 A to 12 A spiked to 16 A for 5 s draws ~4 A x 5 s from
        # the grid for nothing, at every step of a rising surplus. The reactive trigger still
        # frees a car stuck anywhere.
        from_floor = max(w.reported, w.prev) <= PROACTIVE_FROM_AMPS + _EPS
        proactive = (
            s.spike_amps_proactively and from_floor and max(w.reported, w.prev) < w.target < spike
        )
        stuck_s = now - (track.sig_change_s if track.sig_change_s is not None else now)
        # Once per episode: TWCManager re-fires for as long as the draw stays put, so a car
        # held by its own charge limit just under our offer (16 A under 20 A, say) would see
        # 20 -> 16 -> 20 every few seconds. After a reactive spike we only continue while the
        # offer is still the spike (the spike-2 retry) and re-arm once the draw has moved.
        rearmed = (
            track.reactive_spike_s is None
            or w.prev == spike
            or (track.sig_change_s is not None and track.sig_change_s > track.reactive_spike_s)
        )
        reactive = (
            s.spike_amps_reactively
            and rearmed
            and REACTIVE_MIN_ACTUAL_AMPS < w.actual <= spike
            and w.prev - w.actual > REACTIVE_GAP_AMPS
            and stuck_s > REACTIVE_STUCK_S
        )
        return proactive, reactive

    # -- step 3: strict wiring gate ----------------------------------------------------------------

    def _gate(self, order: list[_Work], present: set[int]) -> None:
        wiring = self._settings.wiring_max_amps_all_twcs
        absent = sum(
            max(float(t.last_offer or 0), t.reported_amps)
            for twcid, t in self._tracks.items()
            if twcid not in present
        ) + sum(amps for twcid, (amps, _) in self._ghosts.items() if twcid not in present)
        for w in order:
            if w.cand <= w.prev:
                w.new = w.cand

        # Raises: starts (0 -> the planned minimum) first, then charging cars, then lowest
        # TWCID. A start that must wait keeps its minimum reserved, so freed headroom goes to
        # the car the plan admitted rather than to a partial raise of a car already charging.
        raises = sorted(
            (w for w in order if w.new is None), key=lambda w: 0 if w.prev < w.min_amps else 1
        )
        reserved = 0.0
        for w in raises:
            others = absent + sum(v.committed(self._ghost(v)) for v in order if v is not w)
            others += reserved
            room = wiring - others
            # A spike may only use headroom the others' plans leave spare: it must not delay
            # their share.
            planned = (
                reserved
                + absent
                + sum(
                    max(v.committed(self._ghost(v)), float(v.target)) for v in order if v is not w
                )
            )
            for amps in (w.cand, w.fallback):
                limit = wiring - planned if w.spike and amps == w.cand else room
                if amps is not None and w.prev < amps <= limit + _EPS:
                    w.new = amps
                    if amps != w.cand:
                        w.cand_reason, w.spike = f"{w.reason}; no room to spike", False
                    break
            else:
                wanted = w.fallback if w.fallback is not None else w.cand
                allowed = math.floor(room + _EPS)
                w.spike = False
                if w.prev < min(wanted, allowed) and min(wanted, allowed) >= w.min_amps:
                    w.new = min(wanted, allowed)
                    w.cand_reason = f"capped by wiringMaxAmpsAllTWCs at {w.new}A until others lower"
                else:
                    w.new = w.prev if w.valid(w.prev) else 0
                    if w.prev < w.min_amps:
                        reserved += w.min_amps
                    w.cand_reason = (
                        f"raise to {w.cand}A waits: the others still hold {others:.4g}A "
                        f"of wiringMaxAmpsAllTWCs {wiring}A"
                    )

    def _ghost(self, w: _Work) -> float:
        ghost = self._ghosts.get(w.reading.twcid)
        return ghost[0] if ghost is not None else 0.0

    # -- step 4: defence in depth ------------------------------------------------------------------

    def _check(self, order: list[_Work]) -> None:
        wiring = self._settings.wiring_max_amps_all_twcs
        for w in order:
            assert w.new is not None
            if not w.valid(w.new):
                w.new, w.cand_reason = 0, f"safety: {w.new}A is not allowed here: 0"
                w.spike = False
        excess = sum(w.new or 0 for w in order) - wiring
        for w in reversed(order):
            if excess <= 0:
                break
            if w.new:
                lowered = w.new - excess
                lowered = lowered if lowered >= w.min_amps else 0
                excess -= w.new - lowered
                w.new, w.spike = lowered, False
                w.cand_reason = "safety: capped by wiringMaxAmpsAllTWCs"

    # -- history -----------------------------------------------------------------------------------

    def _record(self, w: _Work, now: float) -> Offer:
        track = w.track
        new = int(w.new or 0)
        if new != track.last_offer:  # an unchanged offer stays a spike if it was one
            track.spiked = w.spike and new > 0
        if w.spike and w.reactive:
            track.reactive_spike_s = now
        if track.last_offer is None:
            if new > 0:
                track.last_change_s = track.last_raise_s = now
                track.on_since_s = now
        elif new != track.last_offer:
            track.last_change_s = now
            if new > track.last_offer:
                track.last_raise_s = now
            if track.last_offer == 0:
                track.on_since_s = now
        if new == 0:
            track.on_since_s = None
        track.last_offer = new
        return Offer(
            w.reading.twcid,
            new,
            float(w.target),
            w.cand_reason,
            w.car_stop and new > 0,
            w.stop_held,
        )


def _clamp_budget(budget_amps: float, wiring: int) -> int:
    """Whole amps in [0, wiring]; NaN and negative budgets are 0."""
    try:
        budget = float(budget_amps)
    except (TypeError, ValueError):
        return 0
    if math.isnan(budget) or budget <= 0:
        return 0
    return min(wiring, math.floor(budget)) if budget < math.inf else wiring


def _water_fill(cars: list[_Work], extra: int) -> int:
    """Share ``extra`` amps above each car's minimum as evenly as their caps allow.

    Sets ``target`` on each car (``cars`` in priority order) and returns the level: every car
    gets clamp(level, its minimum, its cap); whole amps left over go one each, in priority
    order, to cars at the level that are below their cap.
    """
    if not cars:
        return 0
    total = sum(w.min_amps for w in cars) + extra

    def used(level: int) -> int:
        return sum(min(max(level, w.min_amps), w.cap) for w in cars)

    lo, hi = 0, max(w.cap for w in cars)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if used(mid) <= total:
            lo = mid
        else:
            hi = mid - 1
    left = total - used(lo)
    for w in cars:
        w.target = min(max(lo, w.min_amps), w.cap)
        if left > 0 and w.target == lo < w.cap:
            w.target += 1
            left -= 1
    return lo
