"""The virtual lab: a host-side and a DUT-side namespace joined by a 100BASE-TX-shaped veth pair.

Nothing here touches the machine's own interfaces: both veth ends are created directly inside the
run's namespaces, and every peer the harness starts runs inside the host-side namespace.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import LabError
from harness.lab.base import LAB_SYSCTLS, WIRE_OVERHEAD_BYTES, Lab, LabAddressing, LinkProfile
from harness.lab.netns import Namespace, delete_namespace, require_tools, run_command


class VethLab(Lab):
    """The namespaces and the shaped veth cable of one run on the virtual board.

    Args:
        run_id: names the namespaces `hil-<run_id>-host` and `hil-<run_id>-dut`.
        link: the cable (rate and MTU; shaped with tbf on both ends).
        addressing: the lab subnet.
        host_if, dut_if: the two ends of the veth pair.
        log_dir: where the logs of spawned programs go.
    """

    def __init__(
        self,
        run_id: str | None = None,
        *,
        link: LinkProfile | None = None,
        addressing: LabAddressing | None = None,
        host_if: str = "lab0",
        dut_if: str = "eth0",
        log_dir: Path | None = None,
    ) -> None:
        super().__init__(run_id, host_if=host_if, addressing=addressing, link=link, log_dir=log_dir)
        self.dut_if = dut_if
        self.dut = Namespace(f"hil-{self.run_id}-dut")

    def _check(self) -> None:
        require_tools("ip", "tc", "ethtool")
        if os.geteuid() != 0:
            raise LabError("the virtual lab needs root (network namespaces, veth, tc): run the suite as root")

    def namespaces(self) -> list[Namespace]:
        """The host and the DUT namespace."""
        return [self.host, self.dut]

    def _build(self) -> None:
        for ns in (self.host, self.dut):
            run_command(["ip", "netns", "add", ns.name])
            ns.ip("link", "set", "lo", "up")
            ns.run("sysctl", "-q", "-w", *LAB_SYSCTLS)
        self.host.ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.dut_if, "netns", self.dut.name)
        for ns, ifname in ((self.host, self.host_if), (self.dut, self.dut_if)):
            # One segment per skb: otherwise tbf charges the 24-byte overhead once per GSO super-packet.
            ns.ip("link", "set", "dev", ifname, "mtu", str(self.link.mtu), "gso_max_segs", "1")
            # Every frame on the cable carries its finished checksums, as on a wire: with TX checksum
            # offload a veth hands the other end's packet socket frames whose checksum is still to be
            # filled in, and the board's stack (smoltcp) verifies every checksum it receives.
            ns.run("ethtool", "-K", ifname, "tx", "off")
            ns.tc(
                "qdisc", "add", "dev", ifname, "root", "tbf",
                "rate", f"{self.link.rate_mbit}mbit", "burst", str(self.link.burst_bytes),
                "limit", str(self.link.limit_bytes), "overhead", str(WIRE_OVERHEAD_BYTES), "linklayer", "ethernet",
            )  # fmt: skip
        self.host.ip("addr", "add", f"{self.addressing.host_ip}/{self.addressing.prefixlen}", "dev", self.host_if)
        self.host.ip("link", "set", self.host_if, "up")

    def _teardown(self) -> None:
        for ns in self.namespaces():
            delete_namespace(ns.name)

    def cable_end(self, side: str) -> tuple[Namespace, str]:
        """Either end of the veth cable: ``host`` or ``dut``."""
        if side == "host":
            return self.host, self.host_if
        if side == "dut":
            return self.dut, self.dut_if
        raise LabError(f"a cable has a host and a dut end, not {side!r}")

    def address_dut(self, ip: str | None = None) -> str:
        """Give the DUT end a static address and bring it up, for a server run there without a board.

        Args:
            ip: the address (default: the first of the DHCP pool).

        Returns:
            The address.
        """
        address = ip or self.addressing.pool_start
        self.dut.ip("addr", "add", f"{address}/{self.addressing.prefixlen}", "dev", self.dut_if)
        self.dut.ip("link", "set", self.dut_if, "up")
        return address
