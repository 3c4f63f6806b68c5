"""The gateway protects itself as IB Gateway does, whatever the realism profile: at most 32 API
connections (IB's default threshold, tws.md "Connection and client ids", [IBAPI-ERR] text of
502), a client that leaves a message half-sent is dropped after ``frame_timeout`` seconds, and
bad bytes (garbage, truncated or oversized frames) end only the client that sent them while the
others keep being served; two clients with one client id get 326.

Raw sockets speak the wire format directly (4-byte big-endian length, NUL-terminated fields).
"""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ib_async import IB, Stock

from ibkr_sim.gateway import running_clock, start_gateway
from ibkr_sim.gateway.profile import IB_PAPER, IDEAL
from tests.gateway.cli_gateway import bound_port, gateway_command

SESSION_START = datetime(2025, 6, 10, 15, 0, tzinfo=UTC)  # Tue 11:00 New York


def framed(*fields: str | bytes) -> bytes:
    payload = b"".join((f if isinstance(f, bytes) else f.encode()) + b"\0" for f in fields)
    return struct.pack(">I", len(payload)) + payload


def read_frame(sock: socket.socket) -> list[bytes] | None:
    """One message's fields, or None once the gateway has closed the socket."""
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        if not chunk:
            return None
        header += chunk
    (size,) = struct.unpack(">I", header)
    payload = b""
    while len(payload) < size:
        chunk = sock.recv(size - len(payload))
        if not chunk:
            return None
        payload += chunk
    return payload.rstrip(b"\0").split(b"\0")


def api_client(port: int, client_id: int | None = None) -> socket.socket:
    """A socket past the handshake (and startApi with ``client_id``, its replies read)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"API\0" + framed("v157..178"))
    assert read_frame(sock) is not None  # server version, connection time
    if client_id is not None:
        sock.sendall(framed("71", "2", str(client_id), ""))
        while True:  # nextValidId, managedAccounts, the three farm notices (the last: 2158)
            fields = read_frame(sock)
            assert fields is not None
            if fields[0] == b"4" and fields[3] == b"2158":
                break
    return sock


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the gateway closes ``sock`` within ``seconds`` (what it sent first is read)."""
    sock.settimeout(seconds)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return False


def current_time(sock: socket.socket) -> bool:
    """The client is still served: reqCurrentTime (49) is answered with currentTime (49)."""
    sock.sendall(framed("49", "1"))
    while (fields := read_frame(sock)) is not None:
        if fields[0] == b"49":
            return True
    return False


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    profile = IB_PAPER.with_options(frame_timeout=1.0, farm_drops_per_day=0.0)
    with start_gateway(
        symbols=30,
        data_dir=tmp_path_factory.mktemp("protect"),
        clock=running_clock(SESSION_START),
        profile=profile,
    ) as handle:
        yield handle


@pytest.fixture(scope="module")
def ib(gateway) -> Iterator[IB]:
    client = IB()
    client.connect("127.0.0.1", gateway.port, clientId=1, timeout=10)
    yield client
    client.disconnect()


def test_at_most_32_connections_by_default(tmp_path: Path) -> None:
    assert IDEAL.max_connections == 32
    with start_gateway(symbols=10, data_dir=tmp_path) as handle:
        clients = [api_client(handle.port) for _ in range(32)]
        try:
            refused = socket.create_connection(("127.0.0.1", handle.port), timeout=5)
            refused.sendall(b"API\0" + framed("v157..178"))
            assert closed_within(refused, 3), "the 33rd connection is closed at once"
            refused.close()
            clients.pop().close()
            time.sleep(0.3)
            again = api_client(handle.port, client_id=77)  # a freed slot is served
            assert current_time(again)
            again.close()
        finally:
            for sock in clients:
                sock.close()


def test_half_sent_message_is_dropped_after_the_timeout(gateway, ib) -> None:
    stalled = api_client(gateway.port, client_id=40)
    stalled.sendall(struct.pack(">I", 1000) + b"49\0" + b"x" * 20)  # 977 bytes never come
    started = time.monotonic()
    assert closed_within(stalled, 5)
    assert 0.8 <= time.monotonic() - started < 4.0  # frame_timeout=1.0 s
    stalled.close()
    silent = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    silent.sendall(b"API\0" + struct.pack(">I", 10) + b"v15")  # a handshake left half-sent
    assert closed_within(silent, 5)
    silent.close()
    assert ib.reqCurrentTime() is not None  # the other client kept being served


def test_oversized_frame_drops_only_that_client(gateway, ib) -> None:
    ib.reqMarketDataType(3)
    (aapl,) = ib.qualifyContracts(Stock("AAPL", "SMART", "USD"))
    ticker = ib.reqMktData(aapl, "", snapshot=False)
    ib.sleep(1.0)
    bystander = api_client(gateway.port, client_id=41)
    big = api_client(gateway.port, client_id=42)
    big.sendall(struct.pack(">I", 64 * 1024 * 1024) + b"49\0")  # 64 MiB announced
    replies = b""
    big.settimeout(3)
    while chunk := big.recv(65536):
        replies += chunk
    assert b"505" in replies and b"exceeds" in replies
    big.close()
    assert current_time(bystander)
    bystander.close()
    ticker.ticks.clear()
    ib.sleep(1.5)
    assert ticker.ticks, "the streaming client kept getting ticks"
    ib.cancelMktData(aapl)


def test_truncated_request_is_answered_and_the_client_stays(gateway) -> None:
    sock = api_client(gateway.port, client_id=43)
    sock.sendall(framed("1", "11", "7"))  # reqMktData cut after its reqId
    error = read_frame(sock)
    assert error is not None and error[0] == b"4" and error[3] == b"320"
    assert error[2] == b"7"  # for that reqId
    assert current_time(sock)
    sock.sendall(b"\x00\x00\x00\x05garbage")  # a frame without a NUL terminator
    assert closed_within(sock, 3)
    sock.close()


def test_garbage_before_the_handshake_drops_only_that_client(gateway, ib) -> None:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert closed_within(sock, 3)
    sock.close()
    assert ib.reqCurrentTime() is not None


def test_two_clients_with_one_client_id_get_326(gateway, ib) -> None:
    other = IB()
    codes: list[int] = []
    other.errorEvent += lambda req_id, code, msg, contract: codes.append(code)
    with pytest.raises((ConnectionError, TimeoutError)):
        other.connect("127.0.0.1", gateway.port, clientId=1, timeout=3)
    assert 326 in codes
    assert ib.reqCurrentTime() is not None


def test_cli_profile_accounts_and_fault(tmp_path: Path) -> None:
    """``ibkr-sim gateway --profile ib-paper --accounts 2 --fault drop-at=+2,...``."""
    proc = subprocess.Popen(
        gateway_command(
            tmp_path,
            10,
            "--profile",
            "ib-paper",
            "--accounts",
            "2",
            "--fault",
            "drop-at=+2,for=0.5,restore=1102",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = bound_port(proc.stdout.readline())
        ib = IB()
        codes: list[int] = []
        ib.errorEvent += lambda req_id, code, msg, contract: codes.append(code)
        ib.connect("127.0.0.1", port, clientId=1, timeout=10)
        try:
            assert ib.managedAccounts() == ["DU1234567", "DU7654321"]
            end = time.monotonic() + 8
            while 1102 not in codes and time.monotonic() < end:
                ib.sleep(0.1)
            assert 1100 in codes and 1102 in codes
        finally:
            ib.disconnect()
    finally:
        proc.terminate()
        proc.wait(10)
    bad = subprocess.run(
        [sys.executable, "-m", "ibkr_sim.cli", "gateway", "--fault", "explode-at=+1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "explode" in bad.stderr


def test_the_gateway_stops_on_sigterm_even_if_its_parent_ignored_it(tmp_path: Path) -> None:
    """An ignored signal is inherited across exec: a gateway started by a process that ignores
    SIGTERM (a test worker, a shell's background job) still stops on terminate()."""

    def ignore_sigterm() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    proc = subprocess.Popen(
        gateway_command(tmp_path, 5),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=ignore_sigterm,
    )
    try:
        assert proc.stdout is not None and "listening on" in proc.stdout.readline()
        proc.terminate()
        assert proc.wait(15) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
