"""Link: the cable is pulled for 2 s (lab side down, up) while idle, during an HTTP download, and during DHCP.

Each pull must show as exactly one `link_down` and one `link_up`, the DUT keeps (or re-acquires) its
address, and a new transfer afterwards reaches the throughput floor.
"""

from __future__ import annotations

import time

from harness.boards.board import Board
from harness.errors import DutTimeoutError, LabError
from harness.lab.http_client import HttpConnection
from harness.lab.traffic import StealMeter, http_download

PULL_S = 2.0
AFTER_PULL_BYTES = 20_000_000


def _events(board: Board, mark: int, name: str) -> int:
    return sum(1 for ln in board.monitor.slice(mark) if ln.machine and ln.machine.fields.get("event") == name)


def _wait_answering(lab, dut_ip: str, timeout: float) -> float:
    """Seconds until the DUT answers HTTP again after the cable is back (polls with short attempts)."""
    started = time.monotonic()

    def attempt() -> bool:
        try:
            with HttpConnection(dut_ip, timeout=0.5) as conn:
                return conn.get("/stats", keep_alive=False).status == 200
        except (LabError, DutTimeoutError, OSError):
            return False

    while not lab.host.call(attempt, timeout=5):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"the DUT did not answer HTTP within {timeout:g} s after the cable came back")
    return time.monotonic() - started


def _check_pull(board: Board, lab, dut_ip: str, hil_config, metrics, before: dict, mark: int, prefix: str) -> None:
    recover_s = _wait_answering(lab, dut_ip, hil_config.thresholds.link_recover_max_s)
    after = board.stats()
    downs, ups = after["link_downs"] - before["link_downs"], after["link_ups"] - before["link_ups"]
    assert (downs, ups) == (1, 1), (
        f"one cable pull, but link_downs +{downs} and link_ups +{ups} (expected +1 each); "
        f"console events: {_events(board, mark, 'link_down')} link_down, {_events(board, mark, 'link_up')} link_up"
    )
    assert board.wait_for_ip(timeout=10) == dut_ip or _events(board, mark, "got_ip"), "the DUT's address changed"
    metrics.record(f"{prefix}_recover_s", recover_s, "s", "lower")
    ceiling = lab.link.tcp_goodput_ceiling_mbps(timestamps=True)
    with StealMeter() as steal:
        transfer = http_download(lab.host, board.wait_for_ip(), AFTER_PULL_BYTES)
    metrics.record(f"{prefix}_after_pull_mbps", transfer.mbps, "Mbit/s", "higher", ceiling=ceiling)
    metrics.record(f"{prefix}_after_pull_cpu_steal_pct", steal.percent, "%", "lower")
    floor = board.throughput_floor_mbps(hil_config.throughput_floor_mbps(ceiling), steal.percent)
    assert transfer.mbps >= floor, (
        f"after the pull a download ran at {transfer.mbps:.1f} Mbit/s, floor {floor:.1f} "
        f"({steal.percent:.1f} % CPU steal)"
    )


def test_cable_pull_idle(board: Board, lab, dut_ip: str, hil_config, metrics) -> None:
    """Pull while nothing runs."""
    before = board.stats()
    mark = board.monitor.mark()
    lab.cable_pull(PULL_S)
    _check_pull(board, lab, dut_ip, hil_config, metrics, before, mark, "link_idle")


def test_cable_pull_during_download(board: Board, lab, dut_ip: str, hil_config, metrics) -> None:
    """Pull once a download is under way; the interrupted transfer may resume or fail, the DUT must recover."""
    before = board.stats()
    mark = board.monitor.mark()
    download = lab.host.submit(http_download, lab.host, dut_ip, 40_000_000, stall_timeout=PULL_S + 8)
    deadline = time.monotonic() + 10
    while board.stats()["tx_bytes"] - before["tx_bytes"] < 2_000_000:  # the DUT is really sending
        assert not download.done(), f"the download ended before the pull: {download.exception()}"
        assert time.monotonic() < deadline, "the download did not start within 10 s"
        time.sleep(0.05)  # polling the DUT's own counter
    lab.cable_pull(PULL_S)
    try:
        download.result(timeout=60)
        survived = 1.0
    except (LabError, DutTimeoutError):
        survived = 0.0
    metrics.record("link_download_survived_pull", survived, "bool", "higher")
    _check_pull(board, lab, dut_ip, hil_config, metrics, before, mark, "link_download")


def test_cable_pull_during_dhcp(board: Board, lab, dhcp_server, hil_config, metrics) -> None:
    """Pull right after a reset, before the lease: the DUT leases once the cable is back."""
    original = dhcp_server.behaviour
    try:
        dhcp_server.configure(silent=True)  # holds the lease back until the pull is done
        since = time.monotonic()
        board.reset(wait_online=False)
        mac = board.hello["mac"]
        dhcp_server.wait_for("DISCOVER", since=since, predicate=lambda e: e.mac == mac, timeout=10)
        boot_mark = board.last_boot.mark if board.last_boot else 0
        board.monitor.wait_for(
            lambda ln: ln.machine is not None and ln.machine.fields.get("event") == "link_up", since=boot_mark,
            timeout=10, what="HIL_EVENT link_up of the boot",
        )  # fmt: skip
        mark = board.monitor.mark()
        lab.set_link(False)
        time.sleep(PULL_S)  # the outage itself is the stimulus
        dhcp_server.behaviour = original
        plugged = time.monotonic()
        lab.set_link(True)
        ack = dhcp_server.wait_for("ACK", since=plugged, predicate=lambda e: e.mac == mac and e.direction == "tx",
                                   timeout=hil_config.thresholds.link_recover_max_s)  # fmt: skip
    finally:
        dhcp_server.behaviour = original
        lab.set_link(True)
    board.monitor.wait_for(
        lambda ln: ln.machine is not None and ln.machine.fields.get("event") == "got_ip", since=mark, timeout=10,
        what="HIL_EVENT got_ip after the cable came back",
    )  # fmt: skip
    metrics.record("link_dhcp_lease_after_plug_s", ack.mono - plugged, "s", "lower")
    assert _events(board, mark, "link_down") == 1 and _events(board, mark, "link_up") == 1, (
        f"{_events(board, mark, 'link_down')} link_down / {_events(board, mark, 'link_up')} link_up events for one pull"
    )
    assert board.ip_info()["ip"] == ack.yiaddr
