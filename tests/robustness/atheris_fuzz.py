"""Coverage-guided fuzzing of the receive path and the decoder with atheris (libFuzzer), by
hand; not collected by pytest (its name does not start with ``test_``).

    .venv/bin/pip install atheris        # 3.0.0 installs from a wheel on CPython 3.11
    .venv/bin/python tests/robustness/atheris_fuzz.py -atheris_runs=200000
    .venv/bin/python tests/robustness/atheris_fuzz.py -max_total_time=600 corpus_dir/

Each input is read by ``garbage.py``'s generator through libFuzzer's data provider (so the
fuzzer steers the kinds of garbage, not only raw bytes), then fed in chunks to a bus master
with two linked slaves and to a ``Core``, and decoded with ``messages.decode`` /
``describe`` and the ``twcmaster decode`` function. Raw input bytes go through the same paths
as well. Any exception, or a receive buffer above 48 bytes (§2.4), is a crash libFuzzer
reports with the input that caused it.
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

with atheris.instrument_imports(include=["twcmaster"]):
    from twcmaster import decode as decode_cli
    from twcmaster.config import config_from_dict
    from twcmaster.core import Core
    from twcmaster.protocol import codec, messages
    from twcmaster.protocol import master as bm

from tests.robustness import garbage  # noqa: E402

LINKED = (0x1234, 0x2345)
RECEIVE_BUFFER_BOUND = 48  # §2.4


class ProviderSource:
    """``garbage.Source`` over libFuzzer's data provider."""

    def __init__(self, fdp: atheris.FuzzedDataProvider) -> None:
        self._fdp = fdp

    def integer(self, lo: int, hi: int) -> int:
        return self._fdp.ConsumeIntInRange(lo, hi)

    def binary(self, lo: int, hi: int) -> bytes:
        data = self._fdp.ConsumeBytes(self._fdp.ConsumeIntInRange(lo, hi))
        return data + bytes(lo - len(data)) if len(data) < lo else data

    def choice(self, options):
        return options[self._fdp.ConsumeIntInRange(0, len(options) - 1)]


CONFIG = config_from_dict(
    {"config": {"wiringMaxAmpsAllTWCs": 32, "wiringMaxAmpsPerTWC": 32, "minAmpsPerTWC": 6}},
    "/tmp",
).settings


def linked_master() -> bm.BusMaster:
    master = bm.BusMaster()
    master.start(0.0)
    for twcid in LINKED:
        link = messages.SlaveLinkReady(twcid, 0x55, 3200, 2)
        master.receive(garbage.slave_wire(link), 0.0)
    return master


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    src = ProviderSource(fdp)
    stream = b"".join(
        garbage.piece(src, LINKED)[1] for _ in range(src.integer(0, 8))
    ) + fdp.ConsumeBytes(64)
    master = linked_master()
    core = Core(CONFIG)
    core.start(0.0)
    now = 0.0
    for chunk in garbage.chunks(src, stream + data[:64]):
        now += src.choice((0.0, 0.001, 0.06, 2.5))
        master.receive(chunk, now)
        core.service(now, chunk)
        core.snapshot(now)
        for parser in (master._parser, core.master._parser):
            if len(parser._collected) > RECEIVE_BUFFER_BOUND:
                raise AssertionError(f"receive buffer holds {len(parser._collected)} bytes")
    try:
        unescaped = codec.unescape(data[:40])
    except codec.FramingError:
        unescaped = b""
    for body in (data, stream, data[:20], unescaped):
        message = messages.decode(body)
        if len(body) >= 3 and message.to_payload() != body[:-1]:
            raise AssertionError(f"decode({body.hex()}) does not re-encode: {message}")
        messages.describe(body)
    for item in decode_cli.decode_all([data.hex(), stream.hex(" "), data.decode("latin-1")]):
        if not isinstance(item, dict):
            raise AssertionError(item)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
