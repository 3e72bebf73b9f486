"""FC B1 / FC B2 and heartbeat pauses in the codec and the bus master (chargeStopMode 2, 3):
the exact frames of the protocol notes (T25, T26), the never-send list intact, and the bus
master refusing the relay commands unless the slave's firmware is known to be >= 4.5.3."""

from __future__ import annotations

import pytest

from twcmaster.protocol import codec, messages
from twcmaster.protocol import master as bm
from twcmaster.protocol.messages import Code, DangerousMessageError

MASTER, SLAVE = 0x7777, 0x032E


def vector(text: str) -> bytes:
    return bytes.fromhex(text)


def test_t25_stop_frame_byte_for_byte():
    stop = messages.AddressedRequest(Code.STOP_CHARGING, MASTER, SLAVE, messages.P2_BODY_LENGTH)
    assert messages.encode_for_tx(stop) == vector(
        "C0 FC B2 77 77 03 2E 00 00 00 00 00 00 00 00 00 D1 C0"
    )


def test_t26_start_frame_byte_for_byte():
    start = messages.AddressedRequest(Code.START_CHARGING, MASTER, SLAVE, messages.P2_BODY_LENGTH)
    assert messages.encode_for_tx(start) == vector(
        "C0 FC B1 77 77 03 2E 00 00 00 00 00 00 00 00 00 D0 C0"
    )


@pytest.mark.parametrize("code", [0xFC19, 0xFC1A, 0xFBE8, 0xFCA1, 0xFBA4])
def test_the_never_send_codes_stay_impossible(code):
    assert code in messages.BLOCKED_CODES and code not in messages.MASTER_TX_CODES
    payload = code.to_bytes(2, "big") + bytes(13)
    with pytest.raises(DangerousMessageError):
        messages.encode_for_tx(messages.Unknown(code, payload))
    with pytest.raises(DangerousMessageError):  # not even with an allow-list that names it
        messages.check_tx_allowed(payload, frozenset({code}))


def test_heartbeat_command_02_stays_impossible():
    error = messages.MasterHeartbeat.build(MASTER, SLAVE, 0x02, 0, 2)
    with pytest.raises(DangerousMessageError):
        messages.encode_for_tx(error)


def test_start_and_stop_are_on_the_allow_list_and_nothing_else_changed():
    assert {Code.START_CHARGING, Code.STOP_CHARGING} <= messages.MASTER_TX_CODES
    assert messages.BLOCKED_CODES == frozenset({0xFC19, 0xFC1A, 0xFBE8, 0xFCA1, 0xFBA4})


# --- the bus master ----------------------------------------------------------------------------


def link(master: bm.BusMaster, twcid: int, now: float, protocol: int = 2) -> None:
    ready = messages.SlaveLinkReady(twcid, 0x21, 3200, protocol)
    master.receive(codec.frame(ready.to_payload()), now)


def answer(master: bm.BusMaster, message: messages.Message, now: float) -> list[bm.Event]:
    return master.receive(codec.frame(message.to_payload()), now)


def drive(master: bm.BusMaster, start: float, end: float, slaves=(SLAVE,), reply=True):
    """Poll every 10 ms; answer heartbeats like a charging slave. Returns what was sent."""
    sent: list[tuple[float, messages.Message]] = []
    now = start
    while now < end:
        wire, _ = master.poll(now)
        if wire is not None:
            message = messages.decode(codec.unescape(wire.strip(b"\xc0")))
            sent.append((now, message))
            if reply and isinstance(message, messages.MasterHeartbeat):
                beat = messages.SlaveHeartbeat.build(message.receiver, MASTER, 1, 1600, 1600, 2)
                answer(master, beat, now + 0.03)
        now = round(now + 0.01, 3)
    return sent


def started(ask_firmware: bool = False) -> bm.BusMaster:
    master = bm.BusMaster(bm.MasterSettings(ask_firmware=ask_firmware))
    master.start(0.0)
    return master


def test_relay_commands_are_refused_until_the_firmware_is_known_to_be_new_enough():
    master = started(ask_firmware=True)
    link(master, SLAVE, 0.0)
    assert not master.send_relay_command(SLAVE, start=False)  # unknown firmware
    sent = drive(master, 0.0, 5.0)
    asks = [m for _, m in sent if isinstance(m, messages.AddressedRequest)]
    assert [m.request for m in asks].count(Code.REQUEST_FIRMWARE) == 1
    assert Code.STOP_CHARGING not in [m.request for m in asks]
    answer(master, messages.FirmwareVersion(SLAVE, (4, 5, 2, 9)), 5.0)
    assert not master.send_relay_command(SLAVE, start=False)  # older than 4.5.3
    events = answer(master, messages.FirmwareVersion(SLAVE, (4, 5, 3, 0)), 5.1)
    assert bm.FirmwareReported(SLAVE, (4, 5, 3, 0)) in events
    assert master.slave_views()[0].relay_commands_supported
    assert master.send_relay_command(SLAVE, start=False)
    sent = drive(master, 5.2, 8.0)
    stops = [(t, m) for t, m in sent if getattr(m, "request", None) == Code.STOP_CHARGING]
    assert len(stops) == 1 and stops[0][1].receiver == SLAVE
    acked = answer(master, messages.SlaveReply(Code.ACK_STOP, SLAVE), 8.0)
    assert bm.RelayAcknowledged(SLAVE, started=False) in acked


def test_p1_slaves_get_no_relay_command_and_no_firmware_question():
    master = started(ask_firmware=True)
    link(master, SLAVE, 0.0, protocol=1)
    answer(master, messages.FirmwareVersion(SLAVE, (4, 5, 3, 0)), 0.5)
    assert not master.send_relay_command(SLAVE, start=True)
    sent = drive(master, 0.0, 40.0)
    assert not [m for _, m in sent if isinstance(m, messages.AddressedRequest)]


def test_the_firmware_question_only_when_asked_for_and_at_most_three_times():
    quiet = started()
    link(quiet, SLAVE, 0.0)
    sent = drive(quiet, 0.0, 100.0)
    assert Code.REQUEST_FIRMWARE not in {getattr(m, "request", None) for _, m in sent}
    asking = started(ask_firmware=True)
    link(asking, SLAVE, 0.0)
    sent = drive(asking, 0.0, 150.0)
    asks = [t for t, m in sent if getattr(m, "request", None) == Code.REQUEST_FIRMWARE]
    assert len(asks) == bm.FIRMWARE_ATTEMPTS


def test_a_paused_slave_hears_nothing_the_other_keeps_its_heartbeats():
    other = 0x0B0B
    master = started()
    link(master, SLAVE, 0.0)
    link(master, other, 0.0)
    drive(master, 0.0, 10.0, slaves=(SLAVE, other))
    assert master.pause_heartbeats(SLAVE, 70.0)
    sent = drive(master, 10.0, 80.0, slaves=(SLAVE, other))
    to_paused = [t for t, m in sent if m.receiver == SLAVE]
    assert to_paused and min(to_paused) >= 70.0  # then it hears from us again
    to_other = [
        t for t, m in sent if isinstance(m, messages.MasterHeartbeat) and m.receiver == other
    ]
    gaps = [b - a for a, b in zip(to_other, to_other[1:], strict=False)]
    assert max(gaps) < 1.1
    assert SLAVE in master.slaves  # not dropped by the 26 s timeout while we are the silent one


def test_a_paused_slaves_committed_amps_keep_counting_in_the_gate():
    other = 0x0B0B
    limits = bm.WiringLimits(max_amps_per_twc=32, max_amps_all_twcs=40, min_amps_per_twc=6)
    master = bm.BusMaster(bm.MasterSettings(limits=limits))
    master.start(0.0)
    link(master, SLAVE, 0.0)
    link(master, other, 0.0)
    master.set_offer(SLAVE, 16)
    master.set_offer(other, 16)
    drive(master, 0.0, 5.0, slaves=(SLAVE, other))  # SLAVE reports 16 A allowed
    master.pause_heartbeats(SLAVE, 65.0)
    master.set_offer(SLAVE, 0)
    master.set_offer(other, 32)
    sent = drive(master, 5.0, 60.0, slaves=(SLAVE, other))
    beats = [m for _, m in sent if isinstance(m, messages.MasterHeartbeat)]
    other_amps = {m.centiamps for m in beats if m.receiver == other and m.command == 9}
    assert max(other_amps) <= 2400  # 40 A - the paused slave's 16 A


def test_stop_lifts_the_pause_so_every_slave_hears_its_0a():
    master = started()
    link(master, SLAVE, 0.0)
    drive(master, 0.0, 3.0)
    master.pause_heartbeats(SLAVE, 100.0)
    master.stop(4.0)
    sent = drive(master, 4.0, 5.0)
    assert [(m.receiver, m.centiamps) for _, m in sent][:1] == [(SLAVE, 0)]
    assert not master.pause_heartbeats(SLAVE, 200.0)
