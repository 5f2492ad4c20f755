"""Twin-side mechanisms of the catalogue faults owned by the faults concern (harness/boards/virtual/faults.py).

Every mechanism acts on real things in the DUT namespace, so the harness sees the fault the way it would
see it on hardware: frames really dropped (and counted), a real rate cap, real carrier loss, a crash
triggered by the real transmit counters. The kernel here has tbf, clsact and classic-BPF `cls_bpf` with
direct action, but no netem, police or gact: drops are cBPF filters that return TC_ACT_SHOT.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.boards.virtual.registry import fault_mechanism, service

if TYPE_CHECKING:
    from harness.boards.virtual.firmware import Firmware

fault_mechanism(
    "rx_pool_starvation", "tx_cap_60pct", "rust_panic_under_load", "task_wdt_under_load", "large_icmp_dropped",
    "link_flap_storm", "rtt_spikes", "ipv6_ll_missing",
)  # fmt: skip

TC_TIMEOUT_S = 5.0
# rx_pool_starvation: one full-size TCP segment in this many is lost (only bulk transfers send full segments).
RX_STARVATION_ONE_IN = 150
FULL_SEGMENT_MIN_IP_BYTES = 1400
# large_icmp_dropped: echo requests with more ICMP payload than this are dropped.
LARGE_ICMP_PAYLOAD = 1000
TX_CAP_MBIT = 60
# The load-triggered crashes: "under load" is above this rate, sampled every LOAD_SAMPLE_S.
LOAD_MBPS = 40.0
LOAD_SAMPLE_S = 0.1
RUST_PANIC_AFTER_BYTES = 2_000_000
WDT_AFTER_S = 1.5
FLAP_PERIOD_S = 3.0
FLAP_DOWN_S = 0.3
SPIKE_PERIOD_S = 0.5
SPIKE_S = 0.03


def _tc(*args: str, check: bool = True) -> str:
    done = subprocess.run(["tc", *args], capture_output=True, text=True, timeout=TC_TIMEOUT_S, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"tc {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


# --- classic BPF, assembled by hand (no bpf_asm on the machine) ---------------------------------------------

# Opcodes (linux/filter.h) and the special offsets of the loads.
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS = 0x20, 0x28, 0x30
_JEQ_K, _JGT_K, _JGE_K = 0x15, 0x25, 0x35
_ALU_MOD_K = 0x94
_RET_K = 0x06
_SKF_AD_PROTOCOL = 0xFFFFF000  # SKF_AD_OFF + 0: skb->protocol in host order
_SKF_AD_RANDOM = 0xFFFFF000 + 56
_SKF_NET_OFF = 0xFFF00000  # offsets from the IP header, wherever the MAC header ends
_TC_ACT_OK, _TC_ACT_SHOT = 0, 2
_ETH_P_IP = 0x0800


@dataclass(frozen=True)
class _Insn:
    code: int
    k: int = 0
    jt: int = 0
    jf: int = 0


def _bytecode(program: list[_Insn]) -> str:
    """tc's `bytecode` argument: the count, then `code jt jf k` per instruction."""
    return ",".join([str(len(program)), *(f"{i.code} {i.jt} {i.jf} {i.k}" for i in program)])


def _ipv4_protocol_prefix(protocol: int, skip_to_pass: int) -> list[_Insn]:
    """IPv4 and the given IP protocol, else jump ``skip_to_pass`` instructions past the prefix."""
    return [
        _Insn(_LD_W_ABS, _SKF_AD_PROTOCOL),
        _Insn(_JEQ_K, _ETH_P_IP, 0, 2 + skip_to_pass),
        _Insn(_LD_B_ABS, _SKF_NET_OFF + 9),
        _Insn(_JEQ_K, protocol, 0, skip_to_pass),
    ]


def rx_starvation_program(one_in: int = RX_STARVATION_ONE_IN) -> str:
    """Drop at random one in ``one_in`` IPv4 TCP packets of full size; pass everything else."""
    body = [
        _Insn(_LD_H_ABS, _SKF_NET_OFF + 2),  # IP total length
        _Insn(_JGE_K, FULL_SEGMENT_MIN_IP_BYTES, 0, 3),
        _Insn(_LD_W_ABS, _SKF_AD_RANDOM),
        _Insn(_ALU_MOD_K, one_in),
        _Insn(_JEQ_K, 0, 1, 0),
        _Insn(_RET_K, _TC_ACT_OK),
        _Insn(_RET_K, _TC_ACT_SHOT),
    ]
    # The prefix's "not ours" jumps land on the RET OK (5 instructions into the body).
    return _bytecode([*_ipv4_protocol_prefix(6, 5), *body])


def large_icmp_program(max_payload: int = LARGE_ICMP_PAYLOAD) -> str:
    """Drop IPv4 ICMP echo requests whose payload exceeds ``max_payload``; pass everything else."""
    body = [
        _Insn(_LD_B_ABS, _SKF_NET_OFF + 20),  # ICMP type (ping sends no IP options)
        _Insn(_JEQ_K, 8, 0, 2),
        _Insn(_LD_H_ABS, _SKF_NET_OFF + 2),  # IP total length = 20 + 8 + payload
        _Insn(_JGT_K, 28 + max_payload, 1, 0),
        _Insn(_RET_K, _TC_ACT_OK),
        _Insn(_RET_K, _TC_ACT_SHOT),
    ]
    return _bytecode([*_ipv4_protocol_prefix(1, 4), *body])


class IngressFilters:
    """Drop filters on the interface's ingress (a clsact qdisc whose drop counter netstats reads)."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.installed = False

    def add(self, bytecode: str) -> None:
        """Add one direct-action cBPF filter (TC_ACT_SHOT drops the frame)."""
        if not self.installed:
            _tc("qdisc", "del", "dev", self.ifname, "clsact", check=False)  # a previous boot's, with old counts
            _tc("qdisc", "add", "dev", self.ifname, "clsact")
            self.installed = True
        _tc("filter", "add", "dev", self.ifname, "ingress", "bpf", "bytecode", bytecode, "da")

    def remove(self) -> None:
        """Remove the qdisc and all its filters."""
        if self.installed:
            _tc("qdisc", "del", "dev", self.ifname, "clsact", check=False)
            self.installed = False


class EgressShaper:
    """Changes the rate of the tbf the lab put on the DUT's egress, keeping its burst and queue limit."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        qdiscs = json.loads(_tc("-j", "qdisc", "show", "dev", ifname, "root") or "[]")
        tbf = next((q for q in qdiscs if q.get("kind") == "tbf"), None)
        if tbf is None:
            raise RuntimeError(f"no tbf on {ifname}'s egress to change (qdiscs: {qdiscs})")
        options = tbf["options"]
        self.rate_bytes = int(options["rate"])
        self.burst = int(options["burst"])
        # tc reports the queue as a latency at the current rate; the lab configured it as a byte limit.
        self.limit = round(self.rate_bytes * int(options["lat"]) / 1e6 + self.burst)
        self.overhead = int(options.get("overhead", 0))

    def set_rate(self, rate: str) -> None:
        """Run the egress at ``rate`` (a tc rate such as ``60mbit``)."""
        _tc("qdisc", "change", "dev", self.ifname, "root", "tbf", "rate", rate, "burst", str(self.burst),
            "limit", str(self.limit), "overhead", str(self.overhead), "linklayer", "ethernet")  # fmt: skip

    def restore(self) -> None:
        """Back to the lab's rate."""
        self.set_rate(f"{self.rate_bytes * 8}bit")


def _counter(fw: Firmware, name: str) -> int:
    try:
        return int((fw.stats.sysfs / name).read_text())
    except (OSError, ValueError):
        return 0


def _watch_load(fw: Firmware) -> None:
    """Crash when the load condition of rust_panic_under_load or task_wdt_under_load is met."""
    sent_under_load = 0
    loaded_since: float | None = None
    last = (_counter(fw, "tx_bytes"), _counter(fw, "rx_bytes"), time.monotonic())
    while not fw.stop.wait(LOAD_SAMPLE_S):
        now = (_counter(fw, "tx_bytes"), _counter(fw, "rx_bytes"), time.monotonic())
        elapsed = max(now[2] - last[2], 1e-6)
        tx_mbps = (now[0] - last[0]) * 8 / elapsed / 1e6
        rx_mbps = (now[1] - last[1]) * 8 / elapsed / 1e6
        if fw.has_fault("rust_panic_under_load") and tx_mbps > LOAD_MBPS:
            sent_under_load += now[0] - last[0]
            if sent_under_load >= RUST_PANIC_AFTER_BYTES:
                fw.crash("rust_panic", "net_poll")
        if fw.has_fault("task_wdt_under_load"):
            if tx_mbps + rx_mbps > LOAD_MBPS:
                loaded_since = loaded_since or last[2]
                if now[2] - loaded_since >= WDT_AFTER_S:
                    fw.crash("wdt", "net_poll")
            else:
                loaded_since = None
        last = now


def _flap_link(fw: Firmware) -> None:
    while not fw.stop.wait(FLAP_PERIOD_S - FLAP_DOWN_S):
        subprocess.run(["ip", "link", "set", fw.ifname, "down"], capture_output=True, timeout=5, check=False)
        fw.stop.wait(FLAP_DOWN_S)
        subprocess.run(["ip", "link", "set", fw.ifname, "up"], capture_output=True, timeout=5, check=False)


def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _echo_reply(packet: bytes) -> tuple[str, bytes] | None:
    """The ICMP echo reply to an IPv4 packet that carries an echo request, with its destination."""
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if len(icmp) < 8 or icmp[0] != 8:
        return None
    reply = bytearray(b"\0\0\0\0" + icmp[4:])
    reply[2:4] = _icmp_checksum(bytes(reply)).to_bytes(2, "big")
    return socket.inet_ntoa(packet[12:16]), bytes(reply)


def _answer_pings_with_spikes(fw: Firmware) -> None:
    """Answer echo requests in the firmware, as smoltcp's poll task does, holding replies in stall windows.

    The kernel's own echo replies are switched off in the DUT namespace; a reply due while the (simulated)
    poll task is held off waits until the window ends, so round trips spike by up to SPIKE_S.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        while not fw.stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.2)
            if not ready:
                continue
            packet = sock.recv(65535)
            answer = _echo_reply(packet)
            if answer is None:
                continue
            phase = time.monotonic() % SPIKE_PERIOD_S
            if phase < SPIKE_S:
                fw.stop.wait(SPIKE_S - phase)  # the stall itself is the fault
            with contextlib.suppress(OSError):
                sock.sendto(answer[1], (answer[0], 0))


def _set_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        Path("/proc/sys", *name.split(".")).write_text(value + "\n")


def _set_ipv6(ifname: str, enabled: bool) -> None:
    _set_sysctl(f"net.ipv6.conf.{ifname}.disable_ipv6", "0" if enabled else "1")


@service
def start_fault_mechanisms(fw: Firmware) -> None:
    """Apply the faults this module implements that the board was started with."""
    ingress = IngressFilters(fw.ifname)
    fw.on_shutdown(ingress.remove)
    if fw.has_fault("rx_pool_starvation"):
        ingress.add(rx_starvation_program())
        fw.stats.track_ingress_drops()
    if fw.has_fault("large_icmp_dropped"):
        ingress.add(large_icmp_program())
    if fw.has_fault("tx_cap_60pct"):
        shaper = EgressShaper(fw.ifname)
        fw.on_shutdown(shaper.restore)
        shaper.set_rate(f"{TX_CAP_MBIT}mbit")
    if fw.has_fault("rtt_spikes"):
        _set_sysctl("net.ipv4.icmp_echo_ignore_all", "1")
        fw.on_shutdown(lambda: _set_sysctl("net.ipv4.icmp_echo_ignore_all", "0"))
        threading.Thread(target=_answer_pings_with_spikes, args=(fw,), name="icmp-echo", daemon=True).start()
    if fw.has_fault("rust_panic_under_load") or fw.has_fault("task_wdt_under_load"):
        threading.Thread(target=_watch_load, args=(fw,), name="load-watch", daemon=True).start()
    if fw.has_fault("link_flap_storm"):
        threading.Thread(target=_flap_link, args=(fw,), name="link-flap", daemon=True).start()
    if fw.has_fault("ipv6_ll_missing"):
        _set_ipv6(fw.ifname, False)
        fw.on_shutdown(lambda: _set_ipv6(fw.ifname, True))
