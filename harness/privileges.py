"""What the lab needs from the kernel, and a check that names exactly what is missing.

Why each capability (Linux man pages: ip-netns(8), capabilities(7), setns(2), socket(7)):
- CAP_SYS_ADMIN: `ip netns add` bind-mounts the new namespace under /run/netns (mount(2)), and both
  `ip netns exec` and the harness's own worker threads enter a namespace with setns(2). There is no
  narrower capability for either.
- CAP_NET_ADMIN: veth pairs, addresses, MTU, tc shaping, and moving a NIC between namespaces.
- CAP_NET_RAW: raw/packet sockets (ping, the virtual board's DHCP client) and SO_BINDTODEVICE.
- CAP_NET_BIND_SERVICE: the lab's DHCP server binds UDP port 67 (and the foreign-server probe port 68).

Giving those to an unprivileged user's Python (file capabilities) is not enough: `ip`, `tc` and the
peers are separate programs and lose the capabilities at execve() unless they are made ambient. So
the narrowly scoped ways to run without logging in as root are, in order of preference:
1. a sudoers rule that lets the CI user run only the project's `hil` wrapper as root
   (ci/setup-runner.sh writes it; see ci/RUNNER.md);
2. for the virtual board only: a user namespace, `unshare --user --map-root-user --net --mount` with a
   tmpfs on /run/netns (everything but /dev/net/tun works there; a real NIC cannot be moved into it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.errors import MissingToolError

CAPABILITIES = {
    "cap_net_bind_service": (10, "the DHCP server binds UDP port 67"),
    "cap_net_admin": (12, "veth, addresses, tc shaping, moving the NIC into the lab namespace"),
    "cap_net_raw": (13, "raw/packet sockets (ping, DHCP client) and SO_BINDTODEVICE"),
    "cap_sys_admin": (21, "`ip netns add` mounts under /run/netns; entering a namespace uses setns(2)"),
}
NETNS_DIR = Path("/run/netns")
FIX = (
    "run the suite as root, or through the sudoers rule ci/setup-runner.sh installs (`sudo ./hil run ...`); "
    "for the virtual board alone `unshare --user --map-root-user --net --mount` also works (see ci/RUNNER.md)"
)


@dataclass(frozen=True)
class PrivilegeReport:
    """The outcome of the privilege check."""

    is_root: bool
    effective: frozenset[str]
    missing: tuple[str, ...]
    netns_dir_writable: bool
    tun_available: bool

    @property
    def ok(self) -> bool:
        """Whether the lab can be built (all capabilities present and /run/netns usable)."""
        return not self.missing and self.netns_dir_writable

    def problems(self) -> list[str]:
        """One line per missing piece, each naming why it is needed."""
        lines = [f"missing {name}: {CAPABILITIES[name][1]}" for name in self.missing]
        if not self.netns_dir_writable:
            lines.append(f"{NETNS_DIR} is not writable (or cannot be created): `ip netns add` keeps namespaces there")
        return lines


def effective_capabilities(status_text: str | None = None) -> frozenset[str]:
    """The names (of those the lab uses) in this process's effective capability set (/proc/self/status CapEff)."""
    text = status_text if status_text is not None else Path("/proc/self/status").read_text()
    for line in text.splitlines():
        if line.startswith("CapEff:"):
            mask = int(line.split()[1], 16)
            return frozenset(name for name, (bit, _why) in CAPABILITIES.items() if mask >> bit & 1)
    return frozenset()


def _netns_dir_writable() -> bool:
    if NETNS_DIR.is_dir():
        return os.access(NETNS_DIR, os.W_OK | os.X_OK)
    return os.access(NETNS_DIR.parent, os.W_OK | os.X_OK)


def check_lab_privileges(status_text: str | None = None) -> PrivilegeReport:
    """Check this process's capabilities, /run/netns and /dev/net/tun."""
    effective = effective_capabilities(status_text)
    missing = tuple(name for name in CAPABILITIES if name not in effective)
    return PrivilegeReport(
        is_root=os.geteuid() == 0,
        effective=effective,
        missing=missing,
        netns_dir_writable=_netns_dir_writable(),
        tun_available=os.access("/dev/net/tun", os.R_OK | os.W_OK),
    )


def require_lab_privileges(nic: bool = False) -> PrivilegeReport:
    """Raise MissingToolError naming each missing capability (and why), with the fix; return the report."""
    report = check_lab_privileges()
    if not report.ok:
        what = "the lab on a real NIC" if nic else "the network lab"
        raise MissingToolError(f"{what} cannot be built: " + "; ".join(report.problems()) + f". Fix: {FIX}")
    return report
