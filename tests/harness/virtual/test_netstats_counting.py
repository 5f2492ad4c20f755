"""The virtual board's counters start when its interface does, as a real EMAC's do at `esp_eth_start`."""

from __future__ import annotations

import select
import subprocess
import sys
import textwrap

from harness.lab.robustness import open_raw_socket
from harness.lab.veth import VethLab
from harness.testing import needs_root

pytestmark = needs_root

# Reads one word per line: `drops` prints frame_pool_drops since counting started, `start` restarts counting.
DUT_SIDE = textwrap.dedent(
    """
    import sys
    from harness.boards.virtual.netstats import NetStats

    stats = NetStats(sys.argv[1])
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "start":
            stats.start_counting()
            print("started", flush=True)
        elif line.strip() == "drops":
            print(stats.snapshot(0)["frame_pool_drops"], flush=True)
    """
)
UNKNOWN_ETHERTYPE = 0x88B6  # no protocol handler in the DUT namespace: the kernel counts rx_dropped


def _send_unhandled_frames(ifname: str, dut_mac: str, count: int) -> None:
    with open_raw_socket(ifname) as sock:
        source = sock.getsockname()[4][:6]
        frame = bytes.fromhex(dut_mac.replace(":", "")) + source + UNKNOWN_ETHERTYPE.to_bytes(2, "big") + bytes(46)
        for _ in range(count):
            sock.send(frame)


def _reply(process: subprocess.Popen, request: str | None = None, timeout: float = 10.0) -> str:
    assert process.stdin is not None and process.stdout is not None
    if request is not None:
        process.stdin.write(request + "\n")
        process.stdin.flush()
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"the DUT-side counter process did not answer {request!r} within {timeout:g} s"
    return process.stdout.readline().strip()


def _dut_rx_dropped(lab: VethLab) -> int:
    return int(lab.dut.run("cat", f"/sys/class/net/{lab.dut_if}/statistics/rx_dropped"))


def test_frames_dropped_before_counting_starts_are_not_counted() -> None:
    with VethLab() as lab:
        lab.dut.ip("link", "set", lab.dut_if, "up")
        dut_mac = lab.dut.run("cat", f"/sys/class/net/{lab.dut_if}/address").strip()
        process = subprocess.Popen(
            lab.dut.argv(sys.executable, "-c", DUT_SIDE, lab.dut_if),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert _reply(process) == "ready"
            before = _dut_rx_dropped(lab)
            lab.host.call(_send_unhandled_frames, lab.host_if, dut_mac, 3)
            # The kernel really dropped them (otherwise this test proves nothing) ...
            assert _dut_rx_dropped(lab) - before == 3
            # ... and a board that has been counting since before they arrived reports them as pool drops.
            assert _reply(process, "drops") == "3"
            assert _reply(process, "start") == "started"
            assert _reply(process, "drops") == "0"
            lab.host.call(_send_unhandled_frames, lab.host_if, dut_mac, 2)
            assert _reply(process, "drops") == "2"
        finally:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
