"""Codec and message tests: the §7 test vectors of shared/protocol/twc-rs485.md, parser
resynchronisation cases, and hypothesis round-trip / garbage-interleaving properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twcmaster.protocol import codec, messages
from twcmaster.protocol.codec import Frame, FrameParser
from twcmaster.protocol.messages import Code

# Wire frames exactly as the protocol notes list them (§7), trailer bytes included.
VECTORS = {
    "T1": "C0 FC 1D 00 00 00 00 00 00 00 00 00 00 00 1D C0",
    "T2": "C0 FC E1 77 77 77 00 00 00 00 00 00 00 00 46 C0 FE",
    "T3": "C0 FB E2 77 77 77 00 00 00 00 00 00 00 00 47 C0",
    "T4": "C0 FD E2 77 77 77 1F 40 00 00 00 00 00 00 A6 C0",
    "T5": "C0 FD E2 77 77 77 1F 40 00 00 00 00 00 00 00 00 A6 C0",
    "T6": "C0 FD E2 77 77 77 0C 80 00 00 00 00 00 00 00 00 D3 C0",
    "T7": "C0 FB E0 77 77 03 2E 05 0F A0 00 00 00 00 B3 C0",
    "T8": "C0 FB E0 77 77 03 2E 05 07 D0 01 00 00 00 DC C0",
    "T9": "C0 FB E0 77 77 03 2E 02 04 00 00 00 00 00 05 C0",
    "T10": "C0 FB E0 77 77 03 2E 05 12 DB DC 00 00 00 00 D6 C0",
    "T11": "C0 FD E0 03 2E 77 77 04 12 DB DC 00 19 00 00 EE C0",
    "T12": "C0 FB E0 77 77 03 2E 05 07 D0 00 00 00 00 DB DD C0",
    "T13": "C0 FD E0 03 2E 77 77 00 00 00 00 19 00 00 18 C0",
    "T14": "C0 FD E0 03 2E 77 77 04 00 00 00 19 00 00 1C C0",
    "T15": "C0 FD E0 03 2E 77 77 03 02 58 00 19 00 00 75 C0",
    "T16": "C0 FB E0 77 77 03 2E 05 00 00 00 00 00 00 04 C0",
    "T16b": "C0 FD E0 03 2E 77 77 01 00 00 00 19 00 00 19 C0",
    "T16b-2": "C0 FB E0 77 77 03 2E 00 00 00 00 00 00 00 FF C0",
    "T17": "C0 FB E0 77 77 03 2E 09 06 00 00 00 00 00 00 00 0E C0",
    "T18": "C0 FB E0 77 77 03 2E 05 08 34 00 00 00 00 00 00 40 C0",
    "T19": "C0 FD E0 77 77 03 2E 01 0F A0 0F A0 00 00 00 00 5E C0",
    "T20": "C0 FB EB 77 77 03 2E 00 00 00 00 00 00 00 00 00 0A C0",
    "T21": "C0 FD EB 77 77 00 00 00 38 00 E6 00 F1 00 E8 00 D0 C0",
    "T22": "C0 FD EB 77 77 00 00 00 14 00 F6 00 00 00 00 00 E3 C0",
    "T23": "C0 FD EB 60 61 00 A3 20 EC 00 F1 00 00 00 00 00 00 00 00 00 4C C0 FC",
    "T24": "C0 FD EB 77 77 00 00 00 77 00 F0 00 00 00 00 00 40 C0",
    "T25": "C0 FC B2 77 77 03 2E 00 00 00 00 00 00 00 00 00 D1 C0",
    "T26": "C0 FC B1 77 77 03 2E 00 00 00 00 00 00 00 00 00 D0 C0",
    "T27": "C0 FB EE 77 77 03 2E 00 00 00 00 00 00 00 00 0D C0",
    "T28": "C0 FB 1B 00 00 00 00 00 00 00 00 00 00 00 00 00 1B C0",
    "T29": "C0 FD EE 03 2E 35 59 4A 33 45 31 45 00 00 00 00 00 00 00 00 E5 C0",
    "T30": "C0 FD EF 03 2E 41 38 4B 46 30 30 30 00 00 00 00 00 00 00 00 BA C0",
    "T31": "C0 FD F1 03 2E 30 30 31 00 00 00 00 00 00 00 00 00 00 00 00 B3 C0",
}


def wire(name: str) -> bytes:
    return bytes.fromhex(VECTORS[name])


def frame_only(raw: bytes) -> bytes:
    """The frame without a trailer byte after the closing C0."""
    return raw[: raw.rindex(0xC0) + 1]


def parse_all(data: bytes, **kwargs) -> list:
    return FrameParser(**kwargs).feed(data, 0.0)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_decodes_and_reencodes_byte_for_byte(name):
    raw = wire(name)
    lenient = codec.LENIENT_BODY_LENGTHS
    events = parse_all(raw, accepted_lengths=lenient)
    assert len(events) == 1 and isinstance(events[0], Frame), events
    frame = events[0]
    assert frame.checksum_ok
    message = messages.decode(frame.body)
    assert not isinstance(message, messages.Unknown), message
    assert codec.frame(message.to_payload()) == frame_only(raw)


def test_decoded_fields_match_the_notes():
    d = lambda n: messages.decode(Frame(codec.unescape(frame_only(wire(n))[1:-1])).body)  # noqa: E731
    assert d("T4") == messages.SlaveLinkReady(0x7777, 0x77, 8000, protocol=1)
    assert d("T6") == messages.SlaveLinkReady(0x7777, 0x77, 3200, protocol=2)
    t10 = d("T10")
    assert (t10.command, t10.centiamps, t10.receiver) == (0x05, 4800, 0x032E)
    t11 = d("T11")
    assert (t11.state, t11.allowed_centiamps, t11.actual_centiamps) == (4, 4800, 25)
    assert d("T17").centiamps == 1536
    t21 = d("T21")
    assert (t21.counter, t21.voltages) == (56, (230, 241, 232))
    t23 = d("T23")
    assert (t23.sender, t23.counter, t23.voltages, t23.phase_half_amps) == (
        0x6061,
        0x00A320EC,
        (241, 0, 0),
        (0, 0, 0),
    )
    assert d("T25") == messages.AddressedRequest(Code.STOP_CHARGING, 0x7777, 0x032E, 16)
    assert d("T27").length == 15
    assert [d(n).text for n in ("T29", "T30", "T31")] == ["5YJ3E1E", "A8KF000", "001"]


def test_encoder_builds_escaped_vectors_from_fields():
    t10 = messages.MasterHeartbeat.build(0x7777, 0x032E, 0x05, 4800, protocol=1)
    assert messages.encode_for_tx(t10) == wire("T10")
    t11 = messages.SlaveHeartbeat.build(0x032E, 0x7777, 0x04, 4800, 25, protocol=1)
    allowed = messages.SLAVE_TX_CODES
    assert messages.encode_for_tx(t11, allowed_codes=allowed) == wire("T11")
    t12 = messages.MasterHeartbeat(0x7777, 0x032E, bytes.fromhex("0507D000000000"))
    assert messages.encode_for_tx(t12) == wire("T12")
    t17 = messages.MasterHeartbeat.build(0x7777, 0x032E, 0x09, 1536, protocol=2)
    assert messages.encode_for_tx(t17) == wire("T17")


def test_trailer_is_skipped_before_next_frame():
    for first in ("T2", "T23"):
        events = parse_all(wire(first) + wire("T7"))
        assert [e.body for e in events] == [
            codec.unescape(frame_only(wire(first))[1:-1]),
            codec.unescape(wire("T7")[1:-1]),
        ]


def test_fragment_then_frame_keeps_the_frame():
    events = parse_all(wire("T13")[:6] + wire("T14"))
    assert [e.body for e in events] == [codec.unescape(wire("T14")[1:-1])]


def test_double_delimiter_is_harmless():
    events = parse_all(b"\xc0\xc0" + wire("T7"))
    assert len(events) == 1 and isinstance(events[0], Frame)


def test_corrupt_byte_is_a_checksum_error():
    raw = bytearray(wire("T7"))
    raw[8] ^= 0x01
    events = parse_all(bytes(raw))
    assert len(events) == 1 and isinstance(events[0], codec.BadFrame)
    assert "checksum" in events[0].reason


def test_bad_escape_and_wrong_length_are_rejected():
    bad_escape = bytes.fromhex("C0 FB E0 77 77 03 2E 05 12 DB 01 00 00 00 00 D6 C0")
    assert "escape" in parse_all(bad_escape)[0].reason
    fifteen = wire("T27")
    assert "length" in parse_all(fifteen)[0].reason  # strict parser: 15 is not 14/16/20


def test_split_reads_and_partial_timeout():
    parser = FrameParser()
    raw = wire("T19")
    assert parser.feed(raw[:5], 0.0) == []
    assert parser.receiving
    assert len(parser.feed(raw[5:], 0.1)) == 1
    assert not parser.receiving
    # A fragment left alone for more than 2 s is dropped, so the next frame parses cleanly.
    parser.feed(raw[:10], 1.0)
    events = parser.feed(raw, 3.5)
    assert len(events) == 1 and isinstance(events[0], Frame)


def test_frame_after_c0_noise_longer_than_a_frame_start():
    noise = b"\xc0" + bytes(range(1, 20))  # opens with C0, long enough to look like a frame
    events = parse_all(noise + wire("T7"))
    assert isinstance(events[-1], Frame) and events[-1].body == codec.unescape(wire("T7")[1:-1])


def test_what_the_protocol_version_decides():
    """§2.6: the body length gives the version; the version gives the set-limit command."""
    assert [messages.protocol_of_length(n) for n in (14, 16)] == [1, 2]
    assert [messages.set_limit_command(p) for p in (1, 2)] == [0x05, 0x09]
    assert messages.LIMIT_COMMANDS == {0x05, 0x08, 0x09}  # M1-M2 carry amps (§4.1)
    assert messages.SAFE_HEARTBEAT_COMMANDS == {0x00, 0x05, 0x08, 0x09}


def test_dangerous_codes_cannot_be_encoded():
    for code in (0xFC19, 0xFC1A, 0xFBE8, 0xFCA1, 0xFBA4):
        message = messages.Unknown(code, code.to_bytes(2, "big") + bytes(13))
        with pytest.raises(messages.DangerousMessageError):
            messages.encode_for_tx(message)
        with pytest.raises(messages.DangerousMessageError):
            messages.encode_for_tx(message, allowed_codes=frozenset({code}))
    error_heartbeat = messages.MasterHeartbeat(0x7777, 0x032E, bytes.fromhex("02040000000000"))
    with pytest.raises(messages.DangerousMessageError):
        messages.encode_for_tx(error_heartbeat)
    slave_message = messages.SlaveLinkReady(0x1234, 0x77, 3200)
    with pytest.raises(messages.DangerousMessageError):
        messages.encode_for_tx(slave_message)  # a master never sends slave codes


# --- properties ------------------------------------------------------------------------------

ids = st.integers(0, 0xFFFF)
byte = st.integers(0, 0xFF)
centiamps = st.integers(0, 0xFFFF)
protocols = st.sampled_from([1, 2])


def padding(size: int):
    """A link-ready's padding: the documented zeros (None) or bytes that are not all zero."""
    return st.none() | st.binary(min_size=size, max_size=size).filter(any)


@st.composite
def any_message(draw) -> messages.Message:
    kind = draw(st.integers(0, 7))
    if kind == 0:
        extra = draw(st.none() | st.binary(min_size=2, max_size=2))
        return messages.MasterLinkReady(
            draw(st.sampled_from([1, 2])), draw(ids), draw(byte), extra, padding=draw(padding(8))
        )
    if kind == 1:
        protocol = draw(protocols)
        return messages.SlaveLinkReady(
            draw(ids),
            draw(byte),
            draw(centiamps),
            protocol,
            padding=draw(padding(protocol * 2 + 4)),
        )
    if kind == 2:
        return messages.MasterHeartbeat.build(
            draw(ids), draw(ids), draw(st.sampled_from([0, 5, 8, 9])), draw(centiamps), 2
        )
    if kind == 3:
        protocol = draw(protocols)
        data = draw(st.binary(min_size=5, max_size=5)) + bytes(2 if protocol == 1 else 4)
        return messages.SlaveHeartbeat(draw(ids), draw(ids), data)
    if kind == 4:
        halves = draw(st.none() | st.tuples(byte, byte, byte))
        volts = draw(st.tuples(centiamps, centiamps, centiamps))
        return messages.EnergyReport(draw(ids), draw(st.integers(0, 2**32 - 1)), volts, halves)
    if kind == 5:
        part = draw(st.integers(1, 3))
        alphabet = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
        size = messages.VIN_PART_LENGTHS[part - 1]
        return messages.VinPart(part, draw(ids), draw(st.text(alphabet, max_size=size)))
    if kind == 6:
        code = draw(st.sampled_from([Code.REQUEST_ENERGY, Code.REQUEST_VIN1, Code.STOP_CHARGING]))
        return messages.AddressedRequest(
            code, draw(ids), draw(ids), draw(st.sampled_from([14, 16]))
        )
    return messages.FirmwareVersion(draw(ids), draw(st.tuples(byte, byte, byte, byte)))


@given(any_message())
def test_every_message_round_trips(message):
    wire_bytes = codec.frame(message.to_payload())
    events = FrameParser().feed(wire_bytes, 0.0)
    assert len(events) == 1 and isinstance(events[0], Frame)
    assert messages.decode(events[0].body) == message


@given(st.binary(min_size=3, max_size=40))
def test_decode_never_raises_and_always_reencodes(body):
    message = messages.decode(body)
    assert message.to_payload() == body[:-1]
    messages.describe(body)  # JSON description never raises either


no_c0 = st.binary(max_size=30).map(lambda b: b.replace(b"\xc0", b""))


@given(st.lists(st.tuples(any_message(), no_c0, st.integers(1, 7)), min_size=1, max_size=6))
@settings(max_examples=200)
def test_frames_survive_garbage_and_arbitrary_read_splits(items):
    stream = b"".join(codec.frame(m.to_payload()) + garbage for m, garbage, _ in items)
    parser = FrameParser()
    got: list[messages.Message] = []
    chunk = items[0][2]
    for start in range(0, len(stream), chunk):
        got += [
            messages.decode(e.body)
            for e in parser.feed(stream[start : start + chunk], 0.0)
            if isinstance(e, Frame)
        ]
    assert got == [m for m, _, _ in items]


@given(st.lists(st.tuples(any_message(), st.binary(max_size=60)), min_size=1, max_size=5))
@settings(max_examples=200)
def test_garbage_with_delimiters_never_hides_the_frame_after_it(items):
    """Garbage may contain C0 bytes; every real frame that follows it must still come through
    (extra frames made of garbage that happens to check out are tolerated)."""
    parser = FrameParser()
    got = []
    for message, garbage in items:
        for event in parser.feed(garbage + codec.frame(message.to_payload()), 0.0):
            if isinstance(event, Frame):
                got.append(messages.decode(event.body))
        assert got and got[-1] == message


def test_lenient_parser_accepts_13_byte_requests_of_esp32_masters():
    thirteen = codec.frame(bytes.fromhex("FBEE7777032E000000000000"))
    (event,) = parse_all(thirteen, accepted_lengths=codec.LENIENT_BODY_LENGTHS)
    assert isinstance(event, Frame) and len(event.body) == 13
    assert parse_all(thirteen) == []  # the strict parser (the master's) waits for 14+ bytes


# Issue 7, finding 1: a corrupted text frame (a byte >= 0x80 where ASCII belongs) passes a
# 1-byte checksum about once in 256 corrupted frames; decoding it must never raise.
TEXT_CODES = (0xFDEE, 0xFDEF, 0xFDF1, 0xFDED)


@pytest.mark.parametrize("code", TEXT_CODES)
@pytest.mark.parametrize("high_byte", [0x80, 0xC3, 0xFF])
def test_text_frames_with_non_ascii_bytes_decode_to_unknown(code, high_byte):
    payload = code.to_bytes(2, "big") + b"\x12\x34" + bytes([high_byte]) + bytes(14)
    body = payload + bytes([codec.checksum(payload)])
    message = messages.decode(body)
    assert isinstance(message, messages.Unknown)
    assert message.to_payload() == payload
    assert messages.describe(body)["checksum_ok"] is True


@given(
    st.sampled_from(TEXT_CODES),
    st.binary(min_size=15, max_size=15),
    st.integers(0, 0xFFFF),
)
def test_text_frames_never_raise_whatever_their_bytes(code, text, sender):
    payload = code.to_bytes(2, "big") + sender.to_bytes(2, "big") + text
    body = payload + bytes([codec.checksum(payload)])
    assert messages.decode(body).to_payload() == payload
    messages.describe(body)


def test_a_partial_frame_open_longer_than_any_frame_is_no_frame_in_flight():
    """Found by the robustness properties: a unit babbling a byte every 40 ms after a C0
    kept ``receiving_at`` true for good, and the master never sent again."""
    parser = codec.FrameParser()
    parser.feed(b"\xc0", 0.0)
    now = 0.0
    for _ in range(10):
        now += 0.04
        parser.feed(b"\x55", now)
    assert parser.receiving  # still collecting, until a C0 or 48 bytes
    assert not parser.receiving_at(now)
    parser.feed(b"\xc0", now)  # a C0 that closes nothing opens the next candidate
    assert parser.receiving_at(now + 0.01)


def test_link_ready_padding_that_is_not_zero_is_kept_not_refused():
    """Documented as zeros, but TWCManager (which links real slaves) checks only the first 6
    and a capture shows slaves with data there (§3.2, §8 Q10): such a frame is still a slave's
    or another master's link-ready, and re-encodes byte for byte."""
    slave = bytes.fromhex("FDE2 032E 55 0C80 000000000000 1234".replace(" ", ""))
    message = messages.decode(slave + b"\x00")
    assert message == messages.SlaveLinkReady(
        0x032E, 0x55, 3200, 2, padding=bytes.fromhex("0000000000001234")
    )
    assert message.to_payload() == slave
    assert message.fields()["padding"] == "00 00 00 00 00 00 12 34"
    master = bytes.fromhex("FBE2 1234 66 800C 0000000000000001".replace(" ", ""))
    message = messages.decode(master + b"\x00")
    assert isinstance(message, messages.MasterLinkReady) and message.sender == 0x1234
    assert message.to_payload() == master
    assert messages.decode(bytes.fromhex("FDE2032E550C80") + bytes(9)).padding is None
