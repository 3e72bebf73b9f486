"""Serve simulated TWC slaves on a real serial port, so that any master can be tested.

``run_slave_sim(port)`` puts a ``SimulatedBus`` behind the project's ``SerialTransport``
(device path, pty path or pyserial URL) or behind an already open descriptor (``"fd:N"``,
e.g. the master side of ``open_pty_pair()``). It sleeps until the bus next has something to
say (``loop.call_at`` on ``next_event_s()``) or bytes arrive; nothing polls.

``twcmaster slave-sim --pty`` is ``open_pty_pair()`` + ``run_slave_sim(f"fd:{fd}")``: the pty's
slave path is what the master under test opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tty
from collections.abc import Callable
from typing import Any

from twcmaster.logs import get_logger
from twcmaster.protocol import codec
from twcmaster.sim.bus import SimulatedBus, make_slaves

#: ``port`` values of this form name an open file descriptor instead of a device.
FD_PORT_PREFIX = "fd:"
READ_CHUNK_BYTES = 4096
#: After a read error on a descriptor (EIO: nobody holds the pty's other side), look again
#: this much later instead of spinning on a descriptor that stays readable.
FD_RETRY_S = 0.5

OnBytes = Callable[[bytes, float], None]
OnLink = Callable[[bool, str | None], None]

# pty slave descriptors kept open by open_pty_pair, by master descriptor (see there).
_PTY_SLAVE_FDS: dict[int, int] = {}


async def run_slave_sim(
    port: str,
    *,
    count: int = 1,
    protocol: int = 2,
    plugged: bool = True,
    max_amps: float = 32.0,
    voltage_v: float = 230,
    seed: int | None = None,
    log: Any = None,
) -> None:
    """Serve ``count`` simulated slaves on ``port`` until cancelled."""
    loop = asyncio.get_running_loop()
    log = log if log is not None else get_logger("twcmaster.sim")
    slaves = make_slaves(
        count,
        protocol=protocol,
        plugged=plugged,
        max_amps=max_amps,
        voltage_v=voltage_v,
        seed=seed,
        powered_on_s=loop.time(),
    )
    for slave in slaves:
        log.info(
            "simulated slave",
            twcid=f"{slave.twcid:04X}",
            sign=f"{slave.sign:02X}",
            protocol=slave.protocol,
            max_amps=slave.max_amps,
            vin=slave.car.vin if slave.car else None,
        )
    server = BusServer(SimulatedBus(slaves), loop, log)
    transport = _make_transport(port, server, loop, log)
    server.attach(transport)
    try:
        await transport.run()
    finally:
        server.stop()


class BusServer:
    """Moves bytes between a transport and a ``SimulatedBus``, on the bus's own schedule."""

    def __init__(self, bus: SimulatedBus, loop: asyncio.AbstractEventLoop, log: Any) -> None:
        self.bus = bus
        self._loop = loop
        self._log = log
        self._transport: Any = None
        self._timer: asyncio.TimerHandle | None = None

    def attach(self, transport: Any) -> None:
        self._transport = transport
        self._reschedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_bytes(self, data: bytes, now: float) -> None:
        self._log.debug("sim rx", data=data.hex(" ").upper())
        self.bus.receive(data, now)
        self._reschedule()

    def on_link(self, is_open: bool, reason: str | None) -> None:
        self._log.info("sim port open" if is_open else "sim port closed", reason=reason)

    def _reschedule(self) -> None:
        self.stop()
        due_s = self.bus.next_event_s()
        if due_s is not None:
            self._timer = self._loop.call_at(due_s, self._flush, due_s)

    def _flush(self, due_s: float) -> None:
        self._timer = None
        # call_at may fire a hair before due_s (clock resolution): never ask for less.
        data = self.bus.transmit(max(self._loop.time(), due_s))
        if data and self._transport is not None:
            self._log.debug("sim tx", data=data.hex(" ").upper())
            self._transport.send(data)  # a closed port drops it, as a real bus would
        self._reschedule()


def _make_transport(port: str, server: BusServer, loop: asyncio.AbstractEventLoop, log: Any):
    if port.startswith(FD_PORT_PREFIX):
        fd = int(port.removeprefix(FD_PORT_PREFIX))
        return FdTransport(fd, on_bytes=server.on_bytes, on_link=server.on_link)
    from twcmaster.transport import SerialTransport  # imported late: pyserial at the edge

    return SerialTransport(
        port,
        baud=codec.BAUD,
        on_bytes=server.on_bytes,
        on_link=server.on_link,
        clock=loop.time,  # the bus's clock is the loop's: call_at and receive agree
        log=log,
    )


class FdTransport:
    """``SerialTransport``'s interface over an open, already configured file descriptor.

    The descriptor stays the caller's: it is not closed when ``run`` ends.
    """

    def __init__(self, fd: int, *, on_bytes: OnBytes, on_link: OnLink | None = None) -> None:
        self._fd = fd
        self._on_bytes = on_bytes
        self._on_link = on_link
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tx = bytearray()
        self._link_up = False

    def send(self, data: bytes) -> bool:
        if not self._link_up:
            return False
        self._tx += data
        self._flush()
        return True

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        os.set_blocking(self._fd, False)
        self._watch()
        self._set_link(True, None)
        try:
            await asyncio.Future()  # until cancelled
        finally:
            self._unwatch()
            self._set_link(False, "transport stopped")

    def _watch(self) -> None:
        assert self._loop is not None
        self._loop.add_reader(self._fd, self._on_readable)

    def _unwatch(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, READ_CHUNK_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(f"read failed: {exc}")
            return
        if data:
            assert self._loop is not None
            self._set_link(True, None)  # back after a loss: the other side talks again
            self._on_bytes(data, self._loop.time())

    def _lost(self, reason: str) -> None:
        assert self._loop is not None
        self._unwatch()
        self._tx.clear()
        self._set_link(False, reason)
        self._loop.call_later(FD_RETRY_S, self._watch)

    def _flush(self) -> None:
        assert self._loop is not None
        while self._tx:
            try:
                written = os.write(self._fd, self._tx)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._lost(f"write failed: {exc}")
                return
            del self._tx[:written]
        if self._tx:
            self._loop.add_writer(self._fd, self._flush)
        else:
            self._loop.remove_writer(self._fd)

    def _set_link(self, is_open: bool, reason: str | None) -> None:
        if is_open == self._link_up:
            return
        self._link_up = is_open
        if self._on_link is not None:
            self._on_link(is_open, reason)


def open_pty_pair(link_path: str | None = None) -> tuple[int, str]:
    """A raw, no-echo pty pair: (master descriptor, slave path). The simulator serves the
    master side (``run_slave_sim(f"fd:{fd}")``); a master under test opens the slave path, or
    ``link_path`` when given (a symlink to it, replaced if it already is a symlink).

    The slave side stays open here too (until ``close_pty_pair``): otherwise the master side
    reads EIO whenever no master under test has the path open, e.g. between its restarts.
    """
    master_fd, slave_fd = os.openpty()
    tty.setraw(slave_fd)  # raw and no echo: the sim must not hear its own frames back
    slave_path = os.ttyname(slave_fd)
    _PTY_SLAVE_FDS[master_fd] = slave_fd
    if link_path is not None:
        _replace_symlink(slave_path, link_path)
    return master_fd, slave_path


def close_pty_pair(master_fd: int) -> None:
    """Close both sides of a pair made by ``open_pty_pair``."""
    slave_fd = _PTY_SLAVE_FDS.pop(master_fd, None)
    for fd in (master_fd, slave_fd):
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _replace_symlink(target: str, link_path: str) -> None:
    if os.path.lexists(link_path) and not os.path.islink(link_path):
        raise FileExistsError(errno.EEXIST, "exists and is not a symlink", link_path)
    temporary = f"{link_path}.{os.getpid()}.tmp"
    os.symlink(target, temporary)
    os.replace(temporary, link_path)  # atomic: a master never sees the link missing


class PtyBus:
    """A ``SimulatedBus`` served in this process on the master side of a new pty pair.

    ``path`` (or ``link_path`` when given) is the port a master opens, exactly as it would
    open a USB adapter. Used by the demo, the benchmark and the integration tests.
    """

    def __init__(self, bus: SimulatedBus, *, link_path: str | None = None, log: Any = None):
        self.bus = bus
        self._link_path = link_path
        self._log = log if log is not None else get_logger("twcmaster.sim")
        self._master_fd: int | None = None
        self._task: asyncio.Task | None = None
        self.server: BusServer | None = None
        self.path = ""

    def start(self) -> None:
        """Create the pty (again, after ``close``) and start answering on it."""
        loop = asyncio.get_running_loop()
        self._master_fd, self.path = open_pty_pair(self._link_path)
        self.server = BusServer(self.bus, loop, self._log)
        transport = FdTransport(
            self._master_fd, on_bytes=self.server.on_bytes, on_link=self.server.on_link
        )
        self.server.attach(transport)
        self._task = asyncio.create_task(transport.run(), name="simulated bus")

    def write_raw(self, data: bytes) -> None:
        """Bytes onto the bus as if another unit sent them."""
        if self._master_fd is not None:
            os.write(self._master_fd, data)

    async def close(self) -> None:
        """Stop answering and remove the pty (and its link), like an unplugged adapter."""
        if self.server is not None:
            self.server.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._master_fd is not None:
            close_pty_pair(self._master_fd)
            self._master_fd = None
        if self._link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._link_path)


def serve_simulated_twcs(
    count: int, *, protocol: int = 2, seed: int | None = None, now_s: float
) -> PtyBus:
    """``count`` simulated TWCs with cars plugged in, answering on a new pty from now on (the
    demo and the benchmark; call inside the running loop, ``close()`` when done)."""
    bus = SimulatedBus(
        make_slaves(count, protocol=protocol, plugged=True, seed=seed, powered_on_s=now_s)
    )
    served = PtyBus(bus)
    served.start()
    return served
