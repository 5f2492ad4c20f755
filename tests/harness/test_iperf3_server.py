"""The firmware's iperf3 server against Debian's real iperf3 client, on loopback.

The client is rate-limited with -b (our server honours it when it sends, as iperf3 does) so these
tests do not saturate the shared CI cores; correctness does not depend on the rate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from harness.services_program import ServicesProgram
from harness.testing import wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("iperf3") is None or shutil.which("cc") is None,
    reason="needs iperf3 and a C compiler (apt-get install iperf3 gcc)",
)

RATE = "400M"


@pytest.fixture(scope="module")
def server() -> Iterator[ServicesProgram]:
    with ServicesProgram(["--iperf3", "0"], sanitized=False, certs=False, mac=None) as services:
        yield services


def iperf3_client(port: int, *args: str, timeout_s: float = 30) -> dict[str, Any]:
    result = subprocess.run(
        ["iperf3", "-c", "127.0.0.1", "-p", str(port), "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    report = json.loads(result.stdout)
    assert result.returncode == 0 and "error" not in report, result.stdout[-2000:]
    return report


@pytest.mark.parametrize(
    ("args", "streams"),
    [
        pytest.param(("-t", "3"), 1, id="tcp-upload"),
        pytest.param(("-t", "3", "-R"), 1, id="tcp-download-R"),
        pytest.param(("-t", "3", "-P", "2"), 2, id="tcp-P2"),
        pytest.param(("-t", "3", "-P", "2", "-R"), 2, id="tcp-P2-R"),
    ],
)
def test_tcp(server: ServicesProgram, args: tuple[str, ...], streams: int) -> None:
    done_before = server.stats()["iperf3"]["tests_done"]
    report = iperf3_client(server.tcp_port("iperf3"), "-b", RATE, *args)
    end = report["end"]
    sent, received = end["sum_sent"], end["sum_received"]
    assert len(end["streams"]) == streams
    assert sent["bytes"] > 0 and received["bytes"] > 0
    # Whichever side received, it cannot have more than was sent, and little may be in flight at the end.
    assert received["bytes"] <= sent["bytes"]
    assert received["bytes"] >= 0.9 * sent["bytes"]
    assert sent["bytes"] == sum(s["sender"]["bytes"] for s in end["streams"])
    assert received["bytes"] == sum(s["receiver"]["bytes"] for s in end["streams"])
    # The server's side reports its own duration for the ~3 s test.
    server_side = "sum_sent" if "-R" in args else "sum_received"
    assert 2.5 <= end[server_side]["seconds"] <= 4.0
    # The client exits as soon as it has sent IPERF_DONE; give the server a moment to count it.
    assert wait_for(lambda: server.stats()["iperf3"]["tests_done"] == done_before + 1)


def test_bidirectional(server: ServicesProgram) -> None:
    report = iperf3_client(server.tcp_port("iperf3"), "-b", RATE, "-t", "2", "--bidir")
    end = report["end"]
    assert end["sum_sent"]["bytes"] > 0 and end["sum_received"]["bytes"] > 0
    assert end["sum_sent_bidir_reverse"]["bytes"] > 0 and end["sum_received_bidir_reverse"]["bytes"] > 0


@pytest.mark.parametrize("reverse", [False, True], ids=["udp-upload", "udp-download-R"])
def test_udp(server: ServicesProgram, reverse: bool) -> None:
    args = ["-u", "-b", "20M", "-l", "1400", "-t", "2"] + (["-R"] if reverse else [])
    report = iperf3_client(server.tcp_port("iperf3"), *args)
    total = report["end"]["sum"]
    # 20 Mbit/s for 2 s in 1400-byte datagrams is ~3571 packets.
    assert 3000 <= total["packets"] <= 4200
    assert total["lost_packets"] <= total["packets"] // 100
    assert total["bytes"] > 0


def test_second_client_is_told_the_server_is_busy(server: ServicesProgram) -> None:
    port = server.tcp_port("iperf3")
    first: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: first.update(iperf3_client(port, "-b", "50M", "-t", "2")))
    denied_before = server.stats()["iperf3"]["access_denied"]
    runner.start()
    try:
        assert wait_for(lambda: _test_running(port)), "the first test never started"
        second = subprocess.run(
            ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", "1", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        runner.join(timeout=30)
    # iperf3 --json reports the refusal in the JSON (its exit status is 0 either way).
    assert "the server is busy" in json.loads(second.stdout)["error"]
    assert first["end"]["sum_received"]["bytes"] > 0
    assert server.stats()["iperf3"]["access_denied"] == denied_before + 1


def _test_running(port: int) -> bool:
    """True when an established connection to the server's port exists (the first client's control)."""
    result = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return result.stdout.count("\n") >= 2  # control + data stream


def test_too_many_streams_are_refused_with_iperf3s_own_error(server: ServicesProgram) -> None:
    result = subprocess.run(
        ["iperf3", "-c", "127.0.0.1", "-p", str(server.tcp_port("iperf3")), "-t", "1", "-P", "9", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "number of parallel streams too large" in json.loads(result.stdout)["error"]
    # The refusal ends that test cleanly: the next one runs.
    assert iperf3_client(server.tcp_port("iperf3"), "-b", "100M", "-t", "1")["end"]["sum_received"]["bytes"] > 0
