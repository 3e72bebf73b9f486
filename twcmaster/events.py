"""What happened in one step of the core: small frozen values, like the protocol's messages.

``Core.service`` returns them with the frames to send (``Step``); the core itself performs no
side effect. Whoever drives the core (the daemon, the day simulator) hands them, in order,
to the outputs (``outputs/``): the console prints its lines from them, the log writes them,
the car API carries out ``CarCommandWanted``. Each output reads the state it shows from the
one ``Snapshot``, never from the core's internals.

Times are the core's clock (monotonic seconds), TWCIDs integers (outputs format them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

# The car commands' give-ups are events as they are (twcid, message): one class, not two.
from twcmaster.control.carcommands import CarNotice
from twcmaster.quickinit import quick_init

if TYPE_CHECKING:
    from twcmaster.carview import CarsView
    from twcmaster.control.busstop import BusStep
    from twcmaster.control.carcommands import CarCommand
    from twcmaster.control.policy import Budget


# --- the bus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlaveLinked:
    twcid: int
    protocol: int
    max_amps: float  # the slave's own maximum, from its link-ready frame


@dataclass(frozen=True)
class SlaveCapped:
    """A slave's own maximum is below wiringMaxAmpsPerTWC: its offers are capped at it."""

    twcid: int
    slave_max_amps: float
    wiring_max_amps_per_twc: float


@dataclass(frozen=True)
class SlaveLost:
    twcid: int
    silent_s: float


@quick_init
@dataclass(frozen=True)
class HeartbeatExchanged:
    """A slave answered a heartbeat (the console's SHB line)."""

    twcid: int
    slave_data: bytes  # S0.. of its reply
    master_data: bytes  # M0.. of the heartbeat we sent it


@dataclass(frozen=True)
class OfferChanged:
    """A set-limit heartbeat went out with amps other than the last one sent to that TWC."""

    twcid: int
    previous_centiamps: int
    centiamps: int
    reason: str = ""  # the allocation's reason for the offer, when it made it


@dataclass(frozen=True)
class EnergyReported:
    twcid: int
    lifetime_kwh: int
    voltages: tuple[int, int, int]


@dataclass(frozen=True)
class VinReported:
    twcid: int
    vin: str | None  # None: the car gives no VIN


@dataclass(frozen=True)
class LinkChanged:
    """The serial line opened or closed."""

    up: bool


# --- decisions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetDecided:
    """The policy decided (at every allocation, whether or not anything changed)."""

    budget: Budget


@dataclass(frozen=True)
class PolicyChanged:
    previous: str  # "" at the first decision
    policy: str
    reason: str


@dataclass(frozen=True)
class PolicyRuleFailed:
    """A policy rule of the user's cannot be evaluated (once, until it can again): it is
    taken as not matching, or its amps as 0 A."""

    rule: str  # its key path in config.json, e.g. policy.extend.before[0]
    problem: str


@dataclass(frozen=True)
class ReadingStale:
    """The green-energy reading became unusable: the budget is the safe value."""

    problem: str


@dataclass(frozen=True)
class ReadingUsable:
    """The green-energy reading is usable again."""


@dataclass(frozen=True)
class CarCommandWanted:
    """Ask a car, through its API, to start or stop charging."""

    command: CarCommand


@dataclass(frozen=True)
class CarsUpdated:
    """The car module's view changed (the account listed, a command's result, a budget):
    handed to the core with a step, passed on for the console and MQTT."""

    view: CarsView


@dataclass(frozen=True)
class BusStopStep:
    """chargeStopMode 2 / 3: a slave's heartbeats paused, or FC B2 / FC B1 sent to it."""

    step: BusStep


@dataclass(frozen=True)
class HeartbeatsResumed:
    """chargeStopMode 2: a paused slave's heartbeats resumed, the first one carrying this."""

    twcid: int
    offer_amps: float


@dataclass(frozen=True)
class RelayAcknowledged:
    """A TWC acknowledged the start (FD B1) or stop (FD B2) command."""

    twcid: int
    started: bool


@dataclass(frozen=True)
class FirmwareReported:
    twcid: int
    version: tuple[int, int, int, int]


# --- trouble ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlarmRaised:
    """An alarm from the bus; raised again for the same kind and TWC at most every minute."""

    kind: str
    twcid: int | None
    message: str


@dataclass(frozen=True)
class AlarmCleared:
    """An alarm not raised again for a while: it leaves the snapshot."""

    kind: str
    twcid: int | None
    message: str


@dataclass(frozen=True)
class InternalError:
    """A bug caught so that the bus goes on (counted in ``Snapshot.internal_errors``)."""

    where: str
    error: BaseException
    count: int  # errors so far, this one included


# --- frames (for the debug log) --------------------------------------------------------------


@dataclass(frozen=True)
class BytesReceived:
    data: bytes


@dataclass(frozen=True)
class FrameSent:
    wire: bytes
    name: str  # the message's name


@dataclass(frozen=True)
class FrameRejected:
    raw: bytes
    reason: str


@dataclass(frozen=True)
class ChargeSessionStarted:
    """A TWC began delivering current (``sessions.py``)."""

    twcid: int
    lifetime_kwh: int | None  # its counter at the start, when known


@dataclass(frozen=True)
class ChargeSessionUpdated:
    """The car of a running session made itself known by its VIN."""

    twcid: int
    vin: str


@dataclass(frozen=True)
class ChargeSessionStopped:
    twcid: int
    duration_s: float
    delivered_kwh: int | None  # from the TWC's lifetime counter (whole kWh), when known
    vin: str  # "" when never known
    lifetime_kwh: int | None


@dataclass(frozen=True)
class FrameIgnored:
    name: str
    reason: str


Event = (
    SlaveLinked
    | SlaveCapped
    | SlaveLost
    | HeartbeatExchanged
    | OfferChanged
    | EnergyReported
    | VinReported
    | LinkChanged
    | BudgetDecided
    | PolicyChanged
    | PolicyRuleFailed
    | ReadingStale
    | ReadingUsable
    | CarCommandWanted
    | CarsUpdated
    | CarNotice
    | BusStopStep
    | HeartbeatsResumed
    | RelayAcknowledged
    | FirmwareReported
    | AlarmRaised
    | AlarmCleared
    | InternalError
    | BytesReceived
    | FrameSent
    | FrameRejected
    | FrameIgnored
    | ChargeSessionStarted
    | ChargeSessionUpdated
    | ChargeSessionStopped
)
