"""The virtual board's esp_smoltcp_stats_t, read from real kernel counters of its own namespace.

Mapping (each is a counter of the same nature as the firmware's):
- rx/tx frames and bytes: the DUT interface's packet and byte counters.
- rx_drops: frames the stack discarded (IP InDiscards/InHdrErrors/InAddrErrors, TCP InErrs,
  UDP InErrors and RcvbufErrors), like smoltcp dropping what it cannot take.
- tx_fails: frames the interface failed to send (tx_errors + tx_dropped), like esp_eth_transmit failing.
- frame_pool_drops: frames the interface could not buffer (rx_dropped, rx_missed_errors, rx_fifo_errors),
  like the RX frame pool running empty; plus, once `track_ingress_drops` is called (the rx_pool_starvation
  fault drops frames with a filter on the interface's ingress), the ingress qdisc's drop counter.
- active_sockets: open TCP/UDP sockets in the namespace (/proc/net/{tcp,udp}{,6}).
- heap: an 8 MiB default heap (internal RAM + PSRAM with CONFIG_SPIRAM_USE_MALLOC) whose use is the
  firmware process's resident memory growth since the end of start-up, so leaks show as a falling
  minimum just as heap_caps_get_minimum_free_size shows them on the chip.
"""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

HEAP_SIZE = 8 * 1024 * 1024
_SNMP_DROPS = {
    "Ip": ("InDiscards", "InHdrErrors", "InAddrErrors"),
    "Tcp": ("InErrs",),
    "Udp": ("InErrors", "RcvbufErrors"),
}


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


def _snmp_drops() -> int:
    try:
        lines = Path("/proc/net/snmp").read_text().splitlines()
    except OSError:
        return 0
    total = 0
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        proto, names = header.split(":", 1)
        table = dict(zip(names.split(), values.split(":", 1)[1].split(), strict=False))
        total += sum(int(table.get(name, 0)) for name in _SNMP_DROPS.get(proto, ()))
    return total


def _socket_count() -> int:
    count = 0
    for name in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/net/{name}") as table:
                count += max(0, sum(1 for _ in table) - 1)
        except OSError:
            continue
    return count


def _rss_bytes() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def ingress_qdisc_drops(ifname: str) -> int:
    """Frames dropped by filters on the interface's ingress (clsact/ingress qdisc counters from `tc -s`)."""
    try:
        done = subprocess.run(["tc", "-s", "-j", "qdisc", "show", "dev", ifname, "ingress"], capture_output=True,
                              text=True, timeout=5, check=False)  # fmt: skip
        qdiscs = json.loads(done.stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0
    return sum(int(q.get("drops", 0)) for q in qdiscs if q.get("kind") in ("clsact", "ingress"))


class NetStats:
    """Counters since this boot of the firmware (the real ones restart at zero on reset too)."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.sysfs = Path("/sys/class/net") / ifname / "statistics"
        self._ingress_base: int | None = None
        self.link_ups = 0
        self.link_downs = 0
        self._base = self._raw()
        self._rss_base = _rss_bytes()
        self.heap_min_free = HEAP_SIZE

    def _raw(self) -> dict[str, int]:
        counter = {name: _read_int(self.sysfs / name) for name in (
            "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "tx_errors", "tx_dropped",
            "rx_dropped", "rx_missed_errors", "rx_fifo_errors",
        )}  # fmt: skip
        pool_drops = counter["rx_dropped"] + counter["rx_missed_errors"] + counter["rx_fifo_errors"]
        if self._ingress_base is not None:
            pool_drops += ingress_qdisc_drops(self.ifname) - self._ingress_base
        return {
            "rx_frames": counter["rx_packets"],
            "rx_bytes": counter["rx_bytes"],
            "rx_drops": _snmp_drops(),
            "tx_frames": counter["tx_packets"],
            "tx_bytes": counter["tx_bytes"],
            "tx_fails": counter["tx_errors"] + counter["tx_dropped"],
            "frame_pool_drops": pool_drops,
        }

    def start_counting(self) -> None:
        """Counters start now, when the interface is up: a real EMAC counts nothing before `esp_eth_start`.

        The veth keeps counting while the board is reset and its interface is down; a host frame that
        reaches it then (the host has not yet noticed the lost carrier) is an rx_dropped that no frame
        pool of the new boot ever saw.
        """
        self._base = self._raw()

    def track_ingress_drops(self) -> None:
        """Count drops of the interface's ingress filters as frame-pool drops from now on."""
        self._ingress_base = ingress_qdisc_drops(self.ifname)

    def settle_heap(self) -> None:
        """Take the heap baseline now: what the firmware allocated during start-up is its static footprint."""
        self._rss_base = _rss_bytes()
        self.heap_min_free = HEAP_SIZE

    def heap_free(self) -> int:
        """Free bytes of the virtual heap now; also updates the minimum."""
        free = max(0, HEAP_SIZE - max(0, _rss_bytes() - self._rss_base))
        self.heap_min_free = min(self.heap_min_free, free)
        return free

    def snapshot(self, uptime_ms: int) -> dict[str, int]:
        """The HIL_STATS fields (without `trigger`/`iface`)."""
        raw = self._raw()
        fields = {name: max(0, value - self._base[name]) for name, value in raw.items()}
        heap_free = self.heap_free()
        return {
            "rx_frames": fields["rx_frames"],
            "rx_bytes": fields["rx_bytes"],
            "rx_drops": fields["rx_drops"],
            "tx_frames": fields["tx_frames"],
            "tx_bytes": fields["tx_bytes"],
            "tx_fails": fields["tx_fails"],
            "link_ups": self.link_ups,
            "link_downs": self.link_downs,
            "active_sockets": _socket_count(),
            "frame_pool_drops": fields["frame_pool_drops"],
            "heap_free": heap_free,
            "heap_min_free": self.heap_min_free,
            "uptime_ms": uptime_ms,
        }
