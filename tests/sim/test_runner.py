"""The runner on a real pty, with a master built by hand on the other end (bounded in time)."""

from __future__ import annotations

import asyncio
import os
import select
import time

import pytest
import serial

from twcmaster.protocol import codec, messages
from twcmaster.sim.bus import make_slaves
from twcmaster.sim.runner import close_pty_pair, open_pty_pair, run_slave_sim

pytestmark = [pytest.mark.integration, pytest.mark.timeout(10)]

MASTER = 0x7777
REPLY_WITHIN_S = 0.5


class FrameReader:
    """Reads frames from a blocking ``read(n)`` callable until one matches or time runs out."""

    def __init__(self, read) -> None:
        self._read = read
        self._parser = codec.FrameParser()
        self._pending: list[messages.Message] = []

    def next_matching(self, wanted, timeout_s: float) -> messages.Message:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            while self._pending:
                message = self._pending.pop(0)
                if wanted(message):
                    return message
            data = self._read()
            for event in self._parser.feed(data, time.monotonic()):
                if isinstance(event, codec.Frame):
                    self._pending.append(messages.decode(event.body))
        raise AssertionError(f"no matching frame within {timeout_s} s")


def heartbeat_wire(receiver: int) -> bytes:
    hb = messages.MasterHeartbeat.build(MASTER, receiver, 0x09, 1600, protocol=2)
    return messages.encode_for_tx(hb)


def is_reply_from(twcid: int):
    return lambda m: isinstance(m, messages.SlaveHeartbeat) and m.sender == twcid


def check_reply(reply: messages.SlaveHeartbeat, twcid: int) -> None:
    assert (reply.sender, reply.receiver) == (twcid, MASTER)
    assert reply.allowed_centiamps == 1600  # the limit we just sent, copied (§4.1)
    assert reply.state in (0x03, 0x08)  # just plugged (03) or starting (08)
    assert len(reply.to_payload()) + 1 == 16  # protocol 2


def test_pty_mode_answers_a_pyserial_master(tmp_path):
    """``slave-sim --pty``: the sim serves the pty's master side, a master opens the link."""

    async def scenario() -> None:
        link = str(tmp_path / "ttyTWC")
        fd, slave_path = open_pty_pair(link)
        assert os.path.realpath(link) == slave_path
        sim = asyncio.create_task(run_slave_sim(f"fd:{fd}", seed=3))
        port = serial.Serial(link, 9600, timeout=0.05)
        try:
            reader = FrameReader(lambda: port.read(64))
            linkready = await asyncio.to_thread(
                reader.next_matching, lambda m: isinstance(m, messages.SlaveLinkReady), 4.0
            )
            assert linkready.protocol == 2 and linkready.max_centiamps == 3200
            started = time.monotonic()
            await asyncio.to_thread(port.write, heartbeat_wire(linkready.sender))
            reply = await asyncio.to_thread(
                reader.next_matching, is_reply_from(linkready.sender), REPLY_WITHIN_S
            )
            assert time.monotonic() - started < REPLY_WITHIN_S
            check_reply(reply, linkready.sender)
        finally:
            sim.cancel()
            await asyncio.gather(sim, return_exceptions=True)
            port.close()
            close_pty_pair(fd)

    asyncio.run(scenario())


def test_serial_transport_mode_on_a_pty_path():
    """A device path through the project's SerialTransport; the test is the master."""
    pytest.importorskip("twcmaster.transport")

    async def scenario() -> None:
        master_fd, slave_fd = os.openpty()
        path = os.ttyname(slave_fd)
        os.set_blocking(master_fd, False)
        twcid = make_slaves(1, seed=8)[0].twcid  # the runner builds the same slaves
        sim = asyncio.create_task(run_slave_sim(path, seed=8))

        def read_master() -> bytes:
            ready, _, _ = select.select([master_fd], [], [], 0.05)
            return os.read(master_fd, 64) if ready else b""

        try:
            reader = FrameReader(read_master)
            # The first link-ready proves the transport has opened the port.
            linkready = await asyncio.to_thread(
                reader.next_matching, lambda m: isinstance(m, messages.SlaveLinkReady), 4.0
            )
            assert linkready.sender == twcid
            started = time.monotonic()
            os.write(master_fd, heartbeat_wire(twcid))
            reply = await asyncio.to_thread(reader.next_matching, is_reply_from(twcid), 0.5)
            assert time.monotonic() - started < REPLY_WITHIN_S
            check_reply(reply, twcid)
        finally:
            sim.cancel()
            await asyncio.gather(sim, return_exceptions=True)
            os.close(master_fd)
            os.close(slave_fd)

    asyncio.run(scenario())
