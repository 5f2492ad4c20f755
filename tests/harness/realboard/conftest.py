"""Fixtures for the real-board tests: a veth pair in throwaway namespaces stands in for the real NIC."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from harness.lab.base import RunOwnership
from harness.lab.netns import PREFIX, Namespace, delete_namespace, new_run_id, run_command

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (network namespaces)"
)


@dataclass
class StandIn:
    """`home` plays the machine's own namespace, `nic` its NIC; the board's side of the cable is `peer` in `far`."""

    home: Namespace
    far: Namespace
    nic: str
    peer: str


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    """A veth pair across two `hil-` namespaces of this test (its owner file keeps other runs' sweeps off them)."""
    tid = new_run_id()
    home, far = Namespace(f"{PREFIX}{tid}-home"), Namespace(f"{PREFIX}{tid}-far")
    ownership = RunOwnership(tid, [home.name, far.name]).acquire()
    try:
        for ns in (home, far):
            run_command(["ip", "netns", "add", ns.name])
            ns.ip("link", "set", "lo", "up")
        home.ip("link", "add", "rnic0", "type", "veth", "peer", "name", "rpeer0", "netns", far.name)
        far.ip("link", "set", "rpeer0", "up")
        yield StandIn(home, far, "rnic0", "rpeer0")
    finally:
        for ns in (home, far):
            ns.shutdown()
            delete_namespace(ns.name)
        ownership.release()
