"""select(): the DUT's select() echo service (TCP 7000, UDP 7001-7004) under concurrent clients, connection
churn, and a lone UDP datagram that must wake the loop."""

from __future__ import annotations

import time

import pytest

from harness.boards.board import Board
from harness.errors import DutTimeoutError, LabError
from harness.lab.echo_client import churn, close_all, mixed_round, open_tcp_clients, open_udp_peers, udp_echo_once
from harness.lab.traffic import percentile

TCP_PORT = 7000
UDP_BASE = 7001
UDP_COUNT = 4
ROUNDS = 20
CHURN_CYCLES = 500
CALL_TIMEOUT_S = 120


def _sockets(board: Board) -> dict:
    reply = board.command("sockets")
    assert reply.get("ok"), f"`sockets` failed: {reply.get('error')}"
    return reply


def _ports(board: Board) -> tuple[int, list[int]]:
    """The select echo ports from HIL_HELLO.services when the firmware lists them, else PROTOCOL.md's."""
    services = board.hello.get("services") or {}
    tcp = int(services.get("select_echo_tcp", TCP_PORT))
    base = int(services.get("select_echo_udp", UDP_BASE))
    count = int(services.get("select_echo_udp_count", UDP_COUNT))
    return tcp, [base + i for i in range(count)]


def _client_limit(board: Board, hil_config) -> int:
    """Most TCP clients to try: the config's limit, the FDs the shim has left, and the service's client table."""
    reply = _sockets(board)
    free_fds = int(reply["fds_max"]) - int(reply["fds_used"])
    max_clients = int(reply["select_echo"].get("max_clients", free_fds))
    return min(hil_config.thresholds.select_fd_limit, free_fds, max_clients)


def _wait_clients_closed(board: Board, baseline: int, timeout: float = 3.0) -> dict:
    """The service notices closes on its next select() pass: poll `sockets` until the count is back."""
    deadline = time.monotonic() + timeout
    while True:
        echo = _sockets(board)["select_echo"]
        if echo["open_tcp_clients"] <= baseline or time.monotonic() > deadline:
            return echo
        time.sleep(0.05)  # polling a counter the DUT updates on its own schedule


@pytest.mark.parametrize("clients", ["8", "16", "limit"])
def test_select_concurrent_tcp_and_udp(board: Board, lab, dut_ip: str, hil_config, metrics, clients: str) -> None:
    """N TCP clients and the 4 UDP peers exchange data at once, ROUNDS times; every echo is exact."""
    limit = _client_limit(board, hil_config)
    count = limit if clients == "limit" else int(clients)
    if count > limit:
        pytest.skip(f"{count} clients exceed what this DUT offers ({limit}: config, free FDs, client table)")
    tcp_port, udp_ports = _ports(board)
    before = _sockets(board)["select_echo"]

    def run():
        tcp = open_tcp_clients(dut_ip, tcp_port, count)
        udp = open_udp_peers(dut_ip, udp_ports)
        try:
            tcp_s: list[float] = []
            udp_s: list[float] = []
            for round_index in range(ROUNDS):
                size = 64 + (round_index * 97) % 960  # vary the size so segments and buffers vary too
                result = mixed_round(tcp, udp, size, timeout=5.0)
                tcp_s += result.tcp_s
                udp_s += result.udp_s
            return tcp_s, udp_s
        finally:
            close_all(tcp)
            close_all([sock for sock, _ in udp])

    try:
        tcp_s, udp_s = lab.host.call(run, timeout=CALL_TIMEOUT_S)
    except (DutTimeoutError, LabError) as exc:
        echo = _sockets(board)["select_echo"]
        rejected = echo["rejected"] - before["rejected"]
        raise AssertionError(
            f"select() echo with {count} TCP clients + {len(udp_ports)} UDP peers: {exc}; "
            f"udp_datagrams +{echo['udp_datagrams'] - before['udp_datagrams']}, rejected +{rejected}"
            + (" (client slots not recycled?)" if rejected else "")
        ) from exc
    after = _wait_clients_closed(board, before["open_tcp_clients"])
    assert after["rejected"] == before["rejected"], f"{after['rejected'] - before['rejected']} clients were rejected"
    metrics.record("select_tcp_clients", count, "clients", "higher")
    metrics.record("select_tcp_echo_p50_ms", 1000 * percentile(tcp_s, 50), "ms", "lower")
    metrics.record("select_tcp_echo_p99_ms", 1000 * percentile(tcp_s, 99), "ms", "lower")
    metrics.record("select_udp_echo_p50_ms", 1000 * percentile(udp_s, 50), "ms", "lower")
    metrics.record("select_udp_echo_p99_ms", 1000 * percentile(udp_s, 99), "ms", "lower")


def test_select_connection_churn(board: Board, lab, dut_ip: str, hil_config, metrics) -> None:
    """500 connect/echo/close cycles: every one works, and no socket, slot or heap is left behind."""
    tcp_port, _ = _ports(board)
    before = _sockets(board)
    heap_before = board.command("heap")
    try:
        result = lab.host.call(churn, dut_ip, tcp_port, CHURN_CYCLES, timeout=CALL_TIMEOUT_S)
    except LabError as exc:
        echo = _sockets(board)["select_echo"]
        raise AssertionError(
            f"{exc}; the select echo service has accepted +{echo['accepted'] - before['select_echo']['accepted']}, "
            f"rejected +{echo['rejected'] - before['select_echo']['rejected']} (client slots not recycled?)"
        ) from exc
    echo = _wait_clients_closed(board, before["select_echo"]["open_tcp_clients"])
    after = _sockets(board)
    heap_after = board.command("heap")
    accepted = echo["accepted"] - before["select_echo"]["accepted"]
    closed = echo["closed"] - before["select_echo"]["closed"]
    metrics.record("select_churn_cycles_per_s", CHURN_CYCLES / result.seconds, "cycles/s", "higher")
    metrics.record("select_churn_cycle_p99_ms", 1000 * percentile(result.latencies_s, 99), "ms", "lower")
    heap_drop = heap_before["min_free"] - heap_after["min_free"]
    metrics.record("select_churn_heap_min_free_drop_bytes", heap_drop, "B", "lower")

    assert echo["open_tcp_clients"] == before["select_echo"]["open_tcp_clients"], (
        f"{echo['open_tcp_clients']} TCP clients still open after the churn (before: "
        f"{before['select_echo']['open_tcp_clients']}): the service leaks client slots"
    )
    assert accepted == CHURN_CYCLES and closed == CHURN_CYCLES, (
        f"{CHURN_CYCLES} cycles but accepted +{accepted}, closed +{closed}"
    )
    assert echo["rejected"] == before["select_echo"]["rejected"], "clients were rejected during the churn"
    assert after["fds_used"] <= before["fds_used"], (
        f"{after['fds_used'] - before['fds_used']} more file descriptors in use after the churn: sockets leaked"
    )
    budget = hil_config.thresholds.select_heap_drop_max_bytes
    assert heap_drop <= budget, f"heap_min_free fell by {heap_drop} B over the churn (budget {budget} B)"


def test_select_udp_wakes_select(board: Board, lab, dut_ip: str, hil_config, metrics) -> None:
    """With no TCP traffic at all, a datagram on each UDP port is echoed promptly: UDP alone wakes select()."""
    _, udp_ports = _ports(board)
    bound_s = hil_config.thresholds.select_udp_wake_max_ms / 1000
    wait_s = max(2.0, 3 * bound_s)  # long enough to see a late echo (the loop's own 1 s timeout) as late, not lost

    def run() -> list[tuple[int, float]]:
        times = []
        for port in udp_ports:
            for _ in range(5):
                try:
                    times.append((port, udp_echo_once(dut_ip, port, timeout=wait_s)))
                except DutTimeoutError as exc:
                    raise AssertionError(
                        f"a lone UDP datagram to port {port} was not echoed within {wait_s:g} s with no TCP traffic: "
                        f"select() does not report the UDP socket readable ({exc})"
                    ) from exc
        return times

    times = lab.host.call(run, timeout=CALL_TIMEOUT_S)
    seconds = [t for _, t in times]
    metrics.record("select_udp_wake_p50_ms", 1000 * percentile(seconds, 50), "ms", "lower")
    metrics.record("select_udp_wake_max_ms", 1000 * max(seconds), "ms", "lower")
    slow = [(port, t) for port, t in times if t > bound_s]
    assert not slow, (
        f"{len(slow)} of {len(times)} lone UDP datagrams took longer than {1000 * bound_s:.0f} ms to be echoed "
        f"(slowest {1000 * max(seconds):.0f} ms on port {max(slow, key=lambda x: x[1])[0]}): select() only sees "
        "UDP when something else wakes it"
    )
