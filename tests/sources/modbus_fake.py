"""A real Modbus TCP server on loopback (pymodbus) standing in for an inverter or meter, and
raw TCP servers for devices that misbehave.

* ``LoopbackModbusServer({unit: {address: [values]}})``: holding registers per unit id,
  fixed when it starts (pymodbus 3.16's datastore takes them at construction: a test that
  needs other values starts another server); input registers hold the same values; an
  address nobody set answers "illegal data address" (exception 2), as a real device does; a
  unit id nobody set answers "device failure" unless the server was made with
  ``ignore_missing=True`` (then it stays silent, as a gateway with nothing behind the id
  does);
* ``RawTCPServer(reply)``: accepts connections and, for each request, sends ``reply(request)``
  (bytes, or None: say nothing), for garbage and silent devices.

Fixtures (registered by ``conftest.py``): ``make_modbus_server``,
``raw_tcp_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LoopbackModbusServer:
    def __init__(
        self, registers: dict[int, dict[int, list[int]]], *, ignore_missing: bool = False
    ) -> None:
        from pymodbus.datastore import (
            ModbusDeviceContext,
            ModbusServerContext,
            ModbusSparseDataBlock,
        )

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        devices = {}
        for unit, blocks in registers.items():
            values: dict[int, int] = {}
            for address, block in blocks.items():
                for offset, value in enumerate(block):
                    values[address + offset] = value & 0xFFFF
            # Input registers hold the same values (a Victron GX answers both functions).
            devices[unit] = ModbusDeviceContext(
                hr=ModbusSparseDataBlock(values), ir=ModbusSparseDataBlock(dict(values))
            )
        self.context = ModbusServerContext(devices=devices, single=False)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.ignore_missing = ignore_missing
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-modbus", daemon=True)
        self._thread.start()
        if not self._ready.wait(5) or not _listening(self.host, self.port):
            raise RuntimeError("the fake Modbus server did not start")

    def _run(self) -> None:
        from pymodbus.server import ModbusTcpServer

        async def serve() -> None:
            self._server = ModbusTcpServer(
                self.context,
                address=(self.host, self.port),
                ignore_missing_devices=self.ignore_missing,
            )
            self._ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._server.serve_forever()

        self._loop.run_until_complete(serve())

    def stop(self) -> None:
        if self._server is not None and self._loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            with contextlib.suppress(Exception):
                future.result(2)
        self._thread.join(2)


def _listening(host: str, port: int, wait_s: float = 5.0) -> bool:
    deadline_s = time.monotonic() + wait_s
    while time.monotonic() < deadline_s:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.01)
    return False


class RawTCPServer:
    """A TCP server whose answers are ``reply(request_bytes)``; None: no answer at all."""

    def __init__(self, reply: Callable[[bytes], bytes | None]) -> None:
        self.reply = reply
        self.host = "127.0.0.1"
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        with conn:
            while not self.stopping.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                answer = self.reply(data)
                if answer:
                    with contextlib.suppress(OSError):
                        conn.sendall(answer)

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()
        self.thread.join(2)


def mbap_reply(request: bytes, pdu: bytes) -> bytes:
    """A Modbus TCP frame answering ``request`` (same transaction and unit) with ``pdu``."""
    transaction, _, _, unit = struct.unpack(">HHHB", request[:7])
    return struct.pack(">HHHB", transaction, 0, len(pdu) + 1, unit) + pdu


@pytest.fixture
def make_modbus_server() -> Iterator[Callable[..., LoopbackModbusServer]]:
    servers: list[LoopbackModbusServer] = []

    def make(registers: dict[int, dict[int, list[int]]], **kwargs) -> LoopbackModbusServer:
        server = LoopbackModbusServer(registers, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def raw_tcp_server() -> Iterator[Callable[..., RawTCPServer]]:
    servers: list[RawTCPServer] = []

    def make(reply: Callable[[bytes], bytes | None]) -> RawTCPServer:
        server = RawTCPServer(reply)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
