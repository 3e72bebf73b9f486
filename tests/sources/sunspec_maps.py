"""SunSpec register maps as real devices lay them out, for the loopback Modbus fakes.

Each builder returns one model block (its id, its length, its points); ``sunspec_map`` puts
the ``SunS`` marker first and the end marker last. Offsets and sizes follow the SunSpec
information models (common model 1: 65 registers; 101-103: 50; 111-113: 60; 201-204: 105;
211-214: 124).
"""

from __future__ import annotations

import struct

NI16 = 0x8000  # int16 "not implemented"
NU16 = 0xFFFF  # uint16 "not implemented"
NAN = float("nan")


def words(text: str, count: int) -> list[int]:
    raw = text.encode().ljust(count * 2, b"\0")[: count * 2]
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def s16(value: int) -> int:
    return value & 0xFFFF


def f32(value: float) -> list[int]:
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low]


def common(manufacturer: str, model: str, serial: str = "3001234567", address: int = 1):
    body = (
        words(manufacturer, 16)
        + words(model, 16)
        + words("", 8)
        + words("4.01.15.R", 8)
        + words(serial, 16)
        + [address]
    )
    return [1, 65, *body]


def inverter_int(model_id=103, *, w, w_sf=0, phv_a=2312, v_sf=-1, state=4):
    body = [0] * 50
    body[2 - 2] = 152  # A
    body[6 - 2] = s16(-1)  # A_SF
    body[10 - 2] = phv_a
    body[11 - 2] = phv_a
    body[12 - 2] = phv_a
    body[13 - 2] = s16(v_sf)
    body[14 - 2] = s16(w) if w != NI16 else NI16
    body[15 - 2] = s16(w_sf)
    body[16 - 2] = 5001  # Hz
    body[17 - 2] = s16(-2)
    body[38 - 2] = state
    return [model_id, 50, *body]


def inverter_float(model_id=113, *, w, phv_a=231.2, state=4):
    body = [0] * 60
    body[16 - 2 : 18 - 2] = f32(phv_a)
    body[22 - 2 : 24 - 2] = f32(w)
    body[24 - 2 : 26 - 2] = f32(50.01)
    body[48 - 2] = state
    return [model_id, 60, *body]


def meter_int(model_id=203, *, w, w_sf=0, phv=2305, v_sf=-1):
    body = [0] * 105
    body[7 - 2] = s16(phv) if phv != NI16 else NI16
    body[15 - 2] = s16(v_sf)
    body[16 - 2] = 5000
    body[17 - 2] = s16(-2)
    body[18 - 2] = s16(w) if w != NI16 else NI16
    body[19 - 2 : 22 - 2] = [s16(w // 3)] * 3 if w != NI16 else [NI16] * 3
    body[22 - 2] = s16(w_sf) if w_sf != NI16 else NI16
    return [model_id, 105, *body]


def meter_float(model_id=213, *, w, phv=230.5):
    body = [0] * 124
    body[10 - 2 : 12 - 2] = f32(phv)
    body[26 - 2 : 28 - 2] = f32(50.0)
    body[28 - 2 : 30 - 2] = f32(w)
    return [model_id, 124, *body]


def sunspec_map(*models: list[int], base: int = 40000) -> dict[int, list[int]]:
    registers = [0x5375, 0x6E53]
    for model in models:
        registers += model
    registers += [0xFFFF, 0]
    return {base: registers}
