"""The serial line to the TWC bus, as asyncio around pyserial (9600 8N1).

``SerialTransport.run()`` owns the port: it opens it, feeds received bytes to
``on_bytes(data, now)``, writes what ``send()`` queued, and when the port fails (USB
adapter unplugged, pty closed, TCP bridge gone) it reports the loss once and reopens with
exponential back-off until cancelled. The event loop never blocks on the port:

* ports with a file descriptor select() can wait on (device paths, ptys, ``socket://``)
  are read and written with ``loop.add_reader`` / ``loop.add_writer`` and non-blocking
  ``os.read`` / ``os.write``; no thread, no polling;
* URL ports without one (``rfc2217://``, ``loop://``) get a reader thread that blocks in
  ``port.read`` and hands bytes over with ``call_soon_threadsafe``; writes go through
  ``asyncio.to_thread`` with a write timeout.

Opening and closing also run in a worker thread: a TCP connect or a tty close that waits
for output to drain must not stall the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import serial

from twcmaster.logs import get_logger
from twcmaster.protocol import codec

READ_CHUNK_BYTES = 4096  # far more than a TWC frame; one read empties the OS buffer
THREAD_READ_POLL_S = 1.0  # reader threads block this long, then look for a stop request
THREAD_WRITE_TIMEOUT_S = 2.0  # a write that cannot finish in this time means the link is gone
STABLE_LINK_S = 10.0  # a link that stayed up this long resets the reopen back-off
# Retry a lost port at least this often, however long it has been gone: an open() that fails
# costs nothing, and the slaves must hear a heartbeat again soon after the port returns
# (they give up on their master after about 10 s, and a charging car faults after 20-30 s).
REOPEN_MAX_S = 1.0

OnBytes = Callable[[bytes, float], None]
OnLink = Callable[[bool, str | None], None]


class SerialTransport:
    """Keeps one serial port open for the bus master, whatever happens to the device."""

    def __init__(
        self,
        url: str,
        *,
        baud: int = codec.BAUD,
        on_bytes: OnBytes,
        on_link: OnLink | None = None,
        clock: Callable[[], float] = time.monotonic,
        reopen_min_s: float = 0.5,
        reopen_max_s: float = REOPEN_MAX_S,
        log: Any = None,
    ) -> None:
        self._url = url
        self._baud = baud
        self._on_bytes = on_bytes
        self._on_link = on_link
        self._clock = clock
        self._reopen_min_s = reopen_min_s
        self._reopen_max_s = max(reopen_max_s, reopen_min_s)
        self._reopen_delay_s = reopen_min_s  # grows while the port stays unavailable
        self._log = log if log is not None else get_logger(__name__)
        self._session: _Session | None = None
        self._link_up: bool | None = None  # None until the first open attempt
        # One warning and one "open" line per outage: a port that opens and fails at once
        # (a bridge hanging up, a pty whose other side is gone) is the same outage.
        self._outage_warned = False
        self._open_logged = False
        self._last_rx_at = clock()
        self._tx_wire_free_at = clock()  # when the UART will have shifted out what we wrote

    # -- public API ------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._session is not None and self._session.alive

    @property
    def idle_s(self) -> float:
        """Seconds since the last byte was received or left the UART (estimated at 8N1)."""
        busy_until = max(self._last_rx_at, self._tx_wire_free_at)
        return max(0.0, self._clock() - busy_until)

    @property
    def wire_busy_s(self) -> float:
        """Seconds until the UART will have shifted out what was written (estimated)."""
        return max(0.0, self._tx_wire_free_at - self._clock())

    def send(self, data: bytes) -> bool:
        """Queue ``data`` for the wire; False (nothing queued) when the port is not open."""
        session = self._session
        if session is None or not session.alive:
            return False
        if data:
            session.queue(bytes(data))
        return True

    def pause_reading(self) -> None:
        """Stop waking the loop for incoming bytes; they wait in the OS buffer for
        ``read_now``. The bus master pauses while a reply is due, then reads it in the same
        wake-up that sends the next frame: one wake-up per exchange instead of two."""
        if self._session is not None:
            self._session.set_paused(True)

    def resume_reading(self) -> None:
        """Wake the loop for incoming bytes again (``on_bytes``)."""
        if self._session is not None:
            self._session.set_paused(False)

    def read_now(self, now: float | None = None) -> bytes:
        """Whatever the OS holds for us, without blocking (b"" for threaded ports, whose
        bytes always arrive through ``on_bytes``). A lost port is reported as usual."""
        session = self._session
        if session is None or not session.alive:
            return b""
        data = session.read_now()
        if data:
            self._last_rx_at = self._clock() if now is None else now
        return data

    async def drain(self) -> None:
        """Wait until the queued bytes were handed to the OS (or the port was lost)."""
        session = self._session
        if session is not None:
            await session.tx_empty.wait()

    async def run(self) -> None:
        """Open, serve and reopen the port until cancelled. Never raises anything else."""
        try:
            while True:
                try:
                    port = await _open_in_thread(self._open_port)
                except Exception as exc:
                    self._went_down(f"open failed: {exc}")
                else:
                    await self._serve(port)
                await asyncio.sleep(self._reopen_delay_s)
                self._grow_back_off()
        except asyncio.CancelledError:
            if self._link_up:
                self._link_up = False
                self._log.info("serial port closed", port=self._url)
                self._notify_link(False, "transport stopped")
            raise

    def _grow_back_off(self) -> None:
        self._reopen_delay_s = min(self._reopen_delay_s * 2, self._reopen_max_s)

    # -- opening, serving, reporting -----------------------------------------------

    def _open_port(self) -> serial.SerialBase:
        return serial.serial_for_url(
            self._url,
            baudrate=self._baud,
            bytesize=serial.EIGHTBITS,
            parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE,
            timeout=THREAD_READ_POLL_S,
            write_timeout=THREAD_WRITE_TIMEOUT_S,
            exclusive=True,  # a second daemon on the same adapter would garble the bus
        )

    async def _serve(self, port: serial.SerialBase) -> None:
        """Run one open session until the port is lost; report the loss at once."""
        loop = asyncio.get_running_loop()
        fd = _selectable_fd(port)
        session: _Session
        if fd is not None:
            session = _FdSession(self, port, loop, fd)
        else:
            session = _ThreadSession(self, port, loop)
        self._session = session
        opened_at = time.monotonic()  # real time: back-off is not the bus clock's business
        try:
            try:
                session.start()
                self._went_up(threaded=fd is None)
                reason = await session.lost
            except Exception as exc:  # a bug here must not end the transport
                self._log.exception("serial session failed", port=self._url)
                reason = f"internal error: {exc!r}"
            stable = time.monotonic() - opened_at >= STABLE_LINK_S
            if stable:
                self._reopen_delay_s = self._reopen_min_s
                self._outage_warned = False  # the port worked: a new loss is a new outage
            self._went_down(reason)  # before closing: some closes take a while
        finally:
            self._session = None
            await session.close()

    def _went_up(self, *, threaded: bool) -> None:
        self._link_up = True
        if self._open_logged:
            self._log.debug("serial port open again", port=self._url)
        else:
            self._log.info("serial port open", port=self._url, baud=self._baud, threaded=threaded)
            self._open_logged = True
        self._notify_link(True, None)

    def _went_down(self, reason: str) -> None:
        retry_in_s = self._reopen_delay_s
        was_up, self._link_up = self._link_up, False
        if was_up:
            self._notify_link(False, reason)
        if self._outage_warned:  # still the same outage: no new warning
            self._log.debug(
                "serial port retry failed", port=self._url, error=reason, retry_in_s=retry_in_s
            )
            return
        self._outage_warned = True
        self._open_logged = False
        self._log.warning("serial port lost", port=self._url, error=reason, retry_in_s=retry_in_s)
        if was_up is None:  # the first open failed: say so once, as for a loss
            self._notify_link(False, reason)

    def _notify_link(self, is_open: bool, reason: str | None) -> None:
        if self._on_link is None:
            return
        try:
            self._on_link(is_open, reason)
        except Exception:
            self._log.exception("on_link callback failed", port=self._url)

    # -- called by sessions ----------------------------------------------------------

    def _received(self, data: bytes) -> None:
        now = self._clock()
        self._last_rx_at = now
        try:
            self._on_bytes(data, now)
        except Exception:
            self._log.exception("on_bytes callback failed", port=self._url)

    def _wrote(self, nbytes: int) -> None:
        """Track when the wire will be quiet again after ``nbytes`` reached the OS."""
        now = self._clock()
        wire_s = nbytes * codec.BITS_PER_BYTE / self._baud
        self._tx_wire_free_at = max(now, self._tx_wire_free_at) + wire_s


# -- sessions: one per successful open ---------------------------------------------


class _Session:
    """An open port, from a successful open until it is lost or closed."""

    def __init__(
        self, transport: SerialTransport, port: serial.SerialBase, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.transport = transport
        self.port = port
        self.loop = loop
        self.lost: asyncio.Future[str] = loop.create_future()
        self.tx = bytearray()
        self.tx_empty = asyncio.Event()
        self.tx_empty.set()

    @property
    def alive(self) -> bool:
        return not self.lost.done()

    def fail(self, reason: str) -> None:
        """End the session (first reason wins); queued bytes are dropped."""
        if self.lost.done():
            return
        self.lost.set_result(reason)
        self.tx.clear()
        self.tx_empty.set()
        self.stop_io()

    def start(self) -> None:
        raise NotImplementedError

    def queue(self, data: bytes) -> None:
        raise NotImplementedError

    def stop_io(self) -> None:
        """Stop watching the port, as soon as the session ends. Idempotent."""

    def set_paused(self, paused: bool) -> None:
        """Readers that cannot pause (threads) keep delivering through on_bytes."""

    def read_now(self) -> bytes:
        return b""

    async def close(self) -> None:
        self.fail("closed")
        self.stop_io()  # again: a cancelled run() leaves `lost` cancelled, not failed
        await asyncio.to_thread(_close_quietly, self.port)


class _FdSession(_Session):
    """Reads and writes through the event loop's selector: no thread, no polling."""

    def __init__(self, transport, port, loop, fd: int) -> None:
        super().__init__(transport, port, loop)
        self.fd = fd
        self.writing = False
        self.paused = False

    def start(self) -> None:
        os.set_blocking(self.fd, False)
        self.paused = False
        self.loop.add_reader(self.fd, self._on_readable)

    def stop_io(self) -> None:
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused or not self.alive:
            return
        self.paused = paused
        if paused:
            self.loop.remove_reader(self.fd)
        else:
            self.loop.add_reader(self.fd, self._on_readable)

    def read_now(self) -> bytes:
        # A tty in raw mode with VMIN = VTIME = 0 answers "nothing yet" with 0 bytes, so an
        # empty read here is not end of file; a vanished device shows as EIO here, or as EOF
        # once reading resumes (the selector then says readable).
        # A read shorter than asked emptied what the OS held: no second read (it would only
        # raise EAGAIN) for the usual reply, which comes in one piece.
        chunks = []
        while self.alive:
            data = self._read()
            if not data:
                break
            chunks.append(data)
            if len(data) < READ_CHUNK_BYTES:
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _read(self) -> bytes:
        """One non-blocking read; b"" when nothing is waiting (or the port failed)."""
        try:
            return os.read(self.fd, READ_CHUNK_BYTES)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:  # EIO: USB adapter gone, pty other side closed
            self.fail(f"read failed: {exc}")
            return b""

    def _on_readable(self) -> None:
        data = self._read()
        if data:
            self.transport._received(data)
        elif self.alive:  # readable but empty: end of file, the device went away
            self.fail("read failed: end of file (device disconnected)")

    def queue(self, data: bytes) -> None:
        self.tx += data
        self.tx_empty.clear()
        self._flush()

    def _flush(self) -> None:
        while self.tx and self.alive:
            try:
                written = os.write(self.fd, self.tx)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.fail(f"write failed: {exc}")
                return
            del self.tx[:written]
            self.transport._wrote(written)
        if not self.alive:
            return
        self._watch_writable(bool(self.tx))
        if not self.tx:
            self.tx_empty.set()

    def _watch_writable(self, wanted: bool) -> None:
        if wanted and not self.writing:
            self.loop.add_writer(self.fd, self._flush)
        elif not wanted and self.writing:
            self.loop.remove_writer(self.fd)
        self.writing = wanted


class _ThreadSession(_Session):
    """For URL ports without a selectable descriptor: a reader thread, threaded writes."""

    def __init__(self, transport, port, loop) -> None:
        super().__init__(transport, port, loop)
        self.stopping = threading.Event()
        self.tx_ready = asyncio.Event()
        self.reader = threading.Thread(
            target=self._read_loop, name=f"serial reader {transport._url}", daemon=True
        )
        self.writer: asyncio.Task | None = None

    def start(self) -> None:
        self.reader.start()
        self.writer = self.loop.create_task(self._write_loop())

    def stop_io(self) -> None:
        self.stopping.set()
        if self.writer is not None:
            self.writer.cancel()

    def queue(self, data: bytes) -> None:
        self.tx += data
        self.tx_empty.clear()
        self.tx_ready.set()

    async def _write_loop(self) -> None:
        while True:
            await self.tx_ready.wait()
            self.tx_ready.clear()
            while self.tx:
                chunk = bytes(self.tx)
                self.tx.clear()
                try:
                    await asyncio.to_thread(self.port.write, chunk)
                except Exception as exc:  # SerialException, SerialTimeoutException, OSError
                    self.fail(f"write failed: {exc}")
                    return
                self.transport._wrote(len(chunk))
            self.tx_empty.set()

    def _read_loop(self) -> None:
        """Runs in the reader thread: blocks in port.read for at most THREAD_READ_POLL_S."""
        try:
            while not self.stopping.is_set():
                data = self.port.read(1)
                if not data:
                    continue
                waiting = self.port.in_waiting
                if waiting:
                    data += self.port.read(waiting)
                self._to_loop(self.transport._received, data)
        except Exception as exc:
            if not self.stopping.is_set():
                self._to_loop(self.fail, f"read failed: {exc}")

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self.loop.call_soon_threadsafe(self._if_alive, callback, *args)

    def _if_alive(self, callback: Callable[..., None], *args: Any) -> None:
        if self.alive:  # bytes that raced with the end of the session are dropped
            callback(*args)


# -- helpers --------------------------------------------------------------------------


def _selectable_fd(port: serial.SerialBase) -> int | None:
    """The descriptor select() can wait on, or None for ports that have none."""
    try:
        return port.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None


async def _open_in_thread(open_port: Callable[[], serial.SerialBase]) -> serial.SerialBase:
    """Open in a worker thread; if cancelled meanwhile, close the port once it opens."""
    opening = asyncio.ensure_future(asyncio.to_thread(open_port))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_if_opened)
        raise


def _close_if_opened(opening: asyncio.Future) -> None:
    if not opening.cancelled() and opening.exception() is None:
        _close_quietly(opening.result())


def _close_quietly(port: serial.SerialBase) -> None:
    with contextlib.suppress(Exception):  # the device may already be gone
        port.close()
