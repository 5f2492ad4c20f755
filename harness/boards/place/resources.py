"""What a labgrid place gives a run: its console, its Ethernet interface and where they live.

The holder (`holder.py`) acquires the place and reports the resources the coordinator matched to it, as
JSON. This module turns that report into what the esp32p4 board and its NIC lab take: the console URL of the
place's `NetworkSerialPort` (RFC2217, as ser2net exports a USB serial port), the interface of its
`NetworkInterface`/`USBNetworkInterface` (exported as `RemoteNetworkInterface`), and what the results file
records about the place. Pure data, unit-tested without a coordinator.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import BoardError, ConfigError

SERIAL_CLASSES = ("NetworkSerialPort",)
NIC_CLASSES = ("RemoteNetworkInterface", "NetworkInterface", "USBNetworkInterface")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def parse_tags(pairs: Iterable[str]) -> dict[str, str]:
    """`["chip_rev=v1.0", "stack=smoltcp"]` -> a tag filter (labgrid's place tags are key=value)."""
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"--lg-tags {pair!r} is not KEY=VALUE, e.g. --lg-tags chip_rev=v1.0")
        tags[key] = value
    return tags


@dataclass(frozen=True)
class PlaceResource:
    """One resource of an acquired place: its path on the coordinator and what the exporter published."""

    exporter: str
    group: str
    cls: str
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """`exporter/group/class/name`, as `labgrid-client show` prints it."""
        return f"{self.exporter}/{self.group}/{self.cls}/{self.name}"


@dataclass(frozen=True)
class PlaceInfo:
    """An acquired place, as the holder reported it.

    Attributes:
        name: the place.
        owner: who holds it on the coordinator (`host/user`; the user part names the run).
        coordinator: the coordinator's address.
        tags: the place's tags.
        resources: every resource the coordinator matched to the place.
    """

    name: str
    owner: str
    coordinator: str
    tags: Mapping[str, str]
    resources: tuple[PlaceResource, ...]

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> PlaceInfo:
        """The holder's `acquired` report."""
        resources = tuple(
            PlaceResource(r["exporter"], r["group"], r["cls"], r["name"], dict(r.get("params") or {}))
            for r in report["resources"]
        )
        return cls(report["place"], report["owner"], report["coordinator"], dict(report.get("tags") or {}), resources)

    def _one(self, classes: tuple[str, ...], what: str) -> PlaceResource:
        found = [r for r in self.resources if r.cls in classes]
        if not found:
            have = ", ".join(r.path for r in self.resources) or "none"
            raise BoardError(
                f"place {self.name} has no {what} ({' or '.join(classes)}); its resources: {have}. Add one to the "
                f"exporter's configuration and a match to the place (docs/farm.md)"
            )
        if len(found) > 1:
            raise BoardError(
                f"place {self.name} has several {what}s ({', '.join(r.path for r in found)}): match only one"
            )
        return found[0]

    @property
    def serial(self) -> PlaceResource:
        """The console: the place's `NetworkSerialPort`."""
        return self._one(SERIAL_CLASSES, "serial port")

    @property
    def nic(self) -> PlaceResource:
        """The host end of the board's Ethernet cable: the place's network interface."""
        return self._one(NIC_CLASSES, "network interface")

    def console_url(self) -> str:
        """`rfc2217://host:port` of the console (what esptool and the console monitor open)."""
        serial = self.serial
        protocol = str(serial.params.get("protocol") or "rfc2217")
        if protocol != "rfc2217":
            raise BoardError(
                f"place {self.name}'s serial port {serial.path} speaks {protocol!r}; flashing and resetting need "
                "RFC2217 (DTR/RTS): export it with ser2net's telnet/rfc2217 (labgrid's default for USBSerialPort)"
            )
        host, port = serial.params.get("host"), serial.params.get("port")
        if not host or not port:
            raise BoardError(f"place {self.name}'s serial port {serial.path} has no host/port yet (not exported?)")
        return f"rfc2217://{host}:{int(port)}"

    def local_nic(self, this_host: str | None = None) -> str:
        """The NIC's interface name, when the NIC is on this machine (the run executes on the exporter host).

        Raises:
            BoardError: the NIC is on another host: the job belongs on that exporter (docs/farm.md says how CI
                routes it there).
        """
        nic = self.nic
        ifname = nic.params.get("ifname")
        if not ifname:
            raise BoardError(f"place {self.name}'s network interface {nic.path} has no interface name (unplugged?)")
        host = str(nic.params.get("host") or "")
        names = {this_host} if this_host else {socket.gethostname(), socket.getfqdn()}
        if host and host not in names | set(LOCAL_HOSTS):
            raise BoardError(
                f"place {self.name}'s NIC {ifname} is on exporter host {host}, not on this machine "
                f"({', '.join(sorted(names))}): the lab side runs where the board's NIC is. Run this job on {host} "
                "(CI: route it there by runner tag, docs/farm.md)"
            )
        return str(ifname)

    def as_record(self) -> dict[str, Any]:
        """What the results file keeps about the place: name, owner, exporter host(s), tags, resource paths."""
        hosts = sorted({str(r.params["host"]) for r in self.resources if r.params.get("host")})
        return {
            "name": self.name,
            "coordinator": self.coordinator,
            "owner": self.owner,
            "exporters": sorted({r.exporter for r in self.resources}),
            "hosts": hosts,
            "tags": dict(self.tags),
            "resources": [r.path for r in self.resources],
        }
