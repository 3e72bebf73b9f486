"""SerialTransport against real ptys and a real TCP server on loopback (no mocks).

The test holds the pty master, i.e. the bus side of the "adapter"; the transport opens
the slave path (directly or through a symlink standing in for /dev/ttyUSB0).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from twcmaster.transport import SerialTransport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(10)]

SCENARIO_TIMEOUT_S = 5.0
WAIT_TIMEOUT_S = 2.0
FAST_REOPEN = {"reopen_min_s": 0.02, "reopen_max_s": 0.1}
ALL_BYTES = bytes(range(256))
# A P2 heartbeat frame as it appears on the wire (the content does not matter here).
FRAME = bytes.fromhex("C0 FD E0 12 34 77 77 01 06 A4 07 28 00 00 00 00 1B C0")


def run_scenario(scenario: Callable[[], object]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))


class Pty:
    """A pty pair; the test reads and writes the master side."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)  # kept open so the master never sees a hang-up

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view) :]

    async def read_exactly(self, size: int) -> bytes:
        loop = asyncio.get_running_loop()
        received = bytearray()
        done = loop.create_future()

        def on_readable() -> None:
            with contextlib.suppress(BlockingIOError):
                received.extend(os.read(self.master, 4096))
            if len(received) >= size and not done.done():
                done.set_result(None)

        loop.add_reader(self.master, on_readable)
        try:
            await asyncio.wait_for(done, WAIT_TIMEOUT_S)
        finally:
            loop.remove_reader(self.master)
        return bytes(received)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class Recorder:
    """Collects what the transport reports, and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.chunks: list[tuple[bytes, float]] = []
        self.links: list[tuple[bool, str | None]] = []
        self._changed = asyncio.Event()

    @property
    def received(self) -> bytes:
        return b"".join(chunk for chunk, _ in self.chunks)

    def on_bytes(self, data: bytes, now: float) -> None:
        self.chunks.append((data, now))
        self._changed.set()

    def on_link(self, is_open: bool, reason: str | None) -> None:
        self.links.append((is_open, reason))
        self._changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), WAIT_TIMEOUT_S)

    async def until_link(self, is_open: bool, count: int = 1) -> None:
        await self.until(lambda: [up for up, _ in self.links].count(is_open) >= count)


class RecordingLog:
    """Stands in for the structlog logger so tests can count log lines."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict]] = []

    def __getattr__(self, method: str):
        def record(event: str, **kw) -> None:
            self.records.append((method, event, kw))

        return record

    def count(self, method: str, event: str) -> int:
        return sum(1 for m, e, _ in self.records if (m, e) == (method, event))


@contextlib.asynccontextmanager
async def running(transport: SerialTransport):
    task = asyncio.create_task(transport.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_transport(url: str, recorder: Recorder, **kw) -> SerialTransport:
    return SerialTransport(url, on_bytes=recorder.on_bytes, on_link=recorder.on_link, **kw)


async def assert_data_flows(transport: SerialTransport, pty: Pty, recorder: Recorder) -> None:
    already = len(recorder.received)
    assert transport.send(FRAME)
    assert await pty.read_exactly(len(FRAME)) == FRAME
    pty.write(FRAME)
    await recorder.until(lambda: len(recorder.received) >= already + len(FRAME))
    assert recorder.received[already:] == FRAME


def test_all_byte_values_both_ways() -> None:
    async def scenario() -> None:
        pty, recorder = Pty(), Recorder()
        transport = make_transport(pty.path, recorder)
        try:
            async with running(transport):
                await recorder.until_link(True)
                assert transport.is_open

                assert transport.send(ALL_BYTES)
                await transport.drain()
                assert await pty.read_exactly(256) == ALL_BYTES

                pty.write(ALL_BYTES)
                await recorder.until(lambda: len(recorder.received) >= 256)
                assert recorder.received == ALL_BYTES
                assert transport.idle_s < 1.0
        finally:
            pty.close()
        assert recorder.links == [(True, None), (False, "transport stopped")]

    run_scenario(scenario)


def test_chunk_split_across_reads_arrives_in_order() -> None:
    async def scenario() -> None:
        pty, recorder = Pty(), Recorder()
        transport = make_transport(pty.path, recorder)
        try:
            async with running(transport):
                await recorder.until_link(True)
                pty.write(FRAME[:5])
                await recorder.until(lambda: len(recorder.received) >= 5)
                pty.write(FRAME[5:])
                await recorder.until(lambda: len(recorder.received) >= len(FRAME))
        finally:
            pty.close()
        assert recorder.received == FRAME
        assert len(recorder.chunks) >= 2
        stamps = [now for _, now in recorder.chunks]
        assert stamps == sorted(stamps)

    run_scenario(scenario)


def test_missing_port_at_start_opens_when_it_appears(tmp_path: Path) -> None:
    async def scenario() -> None:
        link = tmp_path / "ttyUSB0"
        recorder, log = Recorder(), RecordingLog()
        transport = make_transport(str(link), recorder, log=log, **FAST_REOPEN)
        pty = None
        try:
            async with running(transport):
                await recorder.until_link(False)
                assert not transport.is_open
                assert transport.send(FRAME) is False
                await asyncio.sleep(0.25)  # several retries at 0.02 .. 0.1 s

                pty = Pty()
                os.symlink(pty.path, link)
                await recorder.until_link(True)
                await assert_data_flows(transport, pty, recorder)
        finally:
            if pty:
                pty.close()
        assert recorder.links[0][0] is False and "No such file" in recorder.links[0][1]
        assert recorder.links[1] == (True, None)
        assert log.count("warning", "serial port lost") == 1  # once per outage
        assert log.count("debug", "serial port retry failed") >= 2
        assert log.count("info", "serial port open") == 1

    run_scenario(scenario)


def test_port_vanishes_and_comes_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        link = tmp_path / "ttyUSB0"
        first, second, recorder = Pty(), Pty(), Recorder()
        os.symlink(first.path, link)
        transport = make_transport(str(link), recorder, **FAST_REOPEN)
        try:
            async with running(transport):
                await recorder.until_link(True)
                await assert_data_flows(transport, first, recorder)

                first.close()  # the adapter is unplugged
                link.unlink()
                await recorder.until_link(False)
                assert not transport.is_open
                assert transport.send(FRAME) is False

                os.symlink(second.path, link)  # ... and plugged in again
                await recorder.until_link(True, count=2)
                await assert_data_flows(transport, second, recorder)
        finally:
            first.close()
            second.close()
        assert [up for up, _ in recorder.links] == [True, False, True, False]
        assert recorder.links[1][1].startswith("read failed")

    run_scenario(scenario)


def test_send_on_a_port_never_opened_returns_false() -> None:
    transport = SerialTransport("/nonexistent/ttyUSB9", on_bytes=lambda data, now: None)
    assert transport.is_open is False
    assert transport.send(b"\xc0") is False


def test_a_failing_on_bytes_callback_does_not_stop_the_transport() -> None:
    async def scenario() -> None:
        pty, recorder = Pty(), Recorder()
        calls = []

        def on_bytes(data: bytes, now: float) -> None:
            calls.append(data)
            if len(calls) == 1:
                raise RuntimeError("consumer bug")
            recorder.on_bytes(data, now)

        transport = SerialTransport(
            pty.path, on_bytes=on_bytes, on_link=recorder.on_link, log=RecordingLog()
        )
        try:
            async with running(transport):
                await recorder.until_link(True)
                pty.write(b"\x01")
                await asyncio.wait_for(_until(lambda: calls), WAIT_TIMEOUT_S)
                pty.write(b"\x02")
                await recorder.until(lambda: recorder.received == b"\x02")
                assert transport.is_open
        finally:
            pty.close()

    run_scenario(scenario)


async def _until(condition: Callable[[], object]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


def test_loop_url_uses_the_reader_thread() -> None:
    """loop:// has no descriptor: bytes go through the reader thread and come back."""

    async def scenario() -> None:
        recorder = Recorder()
        transport = make_transport("loop://", recorder)
        async with running(transport):
            await recorder.until_link(True)
            assert transport.send(FRAME)
            await transport.drain()
            await recorder.until(lambda: recorder.received == FRAME)
        assert recorder.links == [(True, None), (False, "transport stopped")]

    run_scenario(scenario)


class TcpBridge:
    """A network RS-485 adapter stand-in: one TCP server on loopback, restartable."""

    def __init__(self) -> None:
        self.port = 0
        self.server: asyncio.Server | None = None
        self.connections: asyncio.Queue = asyncio.Queue()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.connections.put((reader, writer))

    async def stop(self, writer: asyncio.StreamWriter | None = None) -> None:
        self.server.close()
        if writer is not None:
            writer.close()
        await self.server.wait_closed()


def test_socket_url_both_ways_and_survives_server_restart() -> None:
    async def scenario() -> None:
        bridge, recorder = TcpBridge(), Recorder()
        await bridge.start()
        transport = make_transport(f"socket://127.0.0.1:{bridge.port}", recorder, **FAST_REOPEN)
        async with running(transport), contextlib.AsyncExitStack() as cleanup:
            cleanup.push_async_callback(lambda: bridge.stop())
            for round_no in (1, 2):
                await recorder.until_link(True, count=round_no)
                reader, writer = await asyncio.wait_for(bridge.connections.get(), WAIT_TIMEOUT_S)

                assert transport.send(ALL_BYTES)
                assert await asyncio.wait_for(reader.readexactly(256), WAIT_TIMEOUT_S) == ALL_BYTES
                already = len(recorder.received)
                writer.write(ALL_BYTES)
                await recorder.until(lambda n=already: len(recorder.received) >= n + 256)
                assert recorder.received[already:] == ALL_BYTES

                if round_no == 1:  # the bridge reboots
                    await bridge.stop(writer)
                    await recorder.until_link(False)
                    assert transport.send(b"x") is False
                    await asyncio.sleep(0.1)  # a few refused reconnects
                    await bridge.start()
            writer.close()
        assert [up for up, _ in recorder.links] == [True, False, True, False]

    run_scenario(scenario)


def test_paused_reading_keeps_bytes_for_read_now_then_resumes() -> None:
    """The daemon pauses reading while a reply is due and reads it when its window ends."""

    async def scenario() -> None:
        pty, recorder = Pty(), Recorder()
        transport = make_transport(pty.path, recorder, **FAST_REOPEN)
        async with running(transport):
            await recorder.until_link(True)
            assert transport.read_now() == b""  # nothing waiting is not end of file
            transport.pause_reading()
            pty.write(FRAME)
            await asyncio.sleep(0.2)
            assert recorder.received == b""  # no wake-up while paused
            assert transport.read_now() == FRAME
            assert transport.is_open
            transport.resume_reading()
            await assert_data_flows(transport, pty, recorder)
        pty.close()

    run_scenario(scenario)


def test_a_port_that_opens_then_fails_at_once_logs_one_warning_per_outage() -> None:
    """Issue 7, finding 10: a bridge that accepts and hangs up at once (or a pty whose other
    side is gone) made every retry log "serial port open" and a "serial port lost" warning."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        recorder, log = Recorder(), RecordingLog()
        transport = make_transport(f"socket://127.0.0.1:{port}", recorder, log=log, **FAST_REOPEN)
        async with running(transport):
            await recorder.until_link(True, count=5)  # five sessions, each lost at once
        server.close()
        await server.wait_closed()
        assert log.count("warning", "serial port lost") == 1
        # Open at start, and open again after the warning; the further flaps are debug lines.
        assert log.count("info", "serial port open") == 2
        assert log.count("debug", "serial port open again") >= 3

    run_scenario(scenario)


def test_the_reopen_back_off_is_capped_so_a_long_outage_ends_fast() -> None:
    """Issue 7, finding 5: the back-off grew to 16 s; a port back after a 20 s outage was
    found 12.8 s late. The default cap keeps every retry within 1 s."""
    transport = SerialTransport("/nonexistent/ttyUSB0", on_bytes=lambda data, now: None)
    delays = []
    for _ in range(12):
        delays.append(transport._reopen_delay_s)
        transport._grow_back_off()
    assert max(delays) <= 1.0 and delays[0] <= 0.5
