"""NicLab on a veth stand-in: it takes the NIC, serves DHCP on it, refuses foreign networks and restores it."""

from __future__ import annotations

import json

import pytest

from harness.errors import LabError
from harness.lab.base import LabAddressing
from harness.lab.dhcp import DhcpServer
from harness.lab.netns import new_run_id, run_command
from harness.lab.nic import EthtoolInfo, NicLab, read_nic_state

from .conftest import StandIn, needs_root

pytestmark = needs_root


def _lab(stand_in: StandIn, **kwargs: object) -> NicLab:
    kwargs.setdefault("dhcp_probe_s", 0.5)
    return NicLab(stand_in.nic, run_id=new_run_id(), home=stand_in.home, **kwargs)  # type: ignore[arg-type]


def test_nic_is_moved_configured_and_restored_exactly(stand_in: StandIn) -> None:
    home = stand_in.home
    home.ip("link", "set", "rnic0", "mtu", "1400")
    home.ip("addr", "add", "10.77.0.50/24", "dev", "rnic0")
    home.ip("link", "set", "rnic0", "up")
    home.ip("route", "add", "10.77.5.0/24", "via", "10.77.0.254", "dev", "rnic0")
    before = read_nic_state("rnic0", home)
    lab = _lab(stand_in)
    with lab:
        assert "rnic0" not in home.ip("link", "show", check=False)
        state = read_nic_state("rnic0", lab.host)
        assert state.mtu == 1500 and state.up
        assert state.addresses == [("10.77.0.1", 24)]
        assert lab.link.as_dict()["kind"] == "nic"
        assert lab.link.rate_mbit == EthtoolInfo.parse(lab.host.run("ethtool", "rnic0")).speed_mbit
        assert any("negotiated" in w for w in lab.warnings), lab.warnings  # veth is not 100/Full
    after = read_nic_state("rnic0", home)
    assert after.comparable() == before.comparable()
    assert before.routes == [{"dst": "10.77.5.0/24", "gateway": "10.77.0.254", "family": "-4"}]
    assert lab.host.name not in run_command(["ip", "netns", "list"])


def test_dhcp_server_leases_to_the_far_end(stand_in: StandIn) -> None:
    with _lab(stand_in) as lab:
        server = DhcpServer(lab.host, lab.host_if, lab.addressing).start()
        try:
            stand_in.far.run(
                "busybox", "udhcpc", "-i", stand_in.peer, "-n", "-q", "-f", "-t", "5", "-s", "/bin/true", timeout=30
            )
            ack = server.wait_for("ACK", timeout=5)
        finally:
            server.stop()
    peer_mac = json.loads(stand_in.far.ip("-j", "link", "show", stand_in.peer))[0]["address"]
    assert (ack.yiaddr, ack.direction, ack.mac) == ("10.77.0.100", "tx", peer_mac)


def test_foreign_dhcp_server_is_refused_and_nic_given_back(stand_in: StandIn) -> None:
    far = stand_in.far
    far.ip("addr", "add", "10.99.0.1/24", "dev", stand_in.peer)
    foreign = DhcpServer(
        far, stand_in.peer, LabAddressing("10.99.0.0/24", "10.99.0.1", "10.99.0.10", "10.99.0.20"), dns=()
    ).start()
    try:
        before = read_nic_state("rnic0", stand_in.home)
        with pytest.raises(LabError, match=r"DHCP server other than the lab's answers on rnic0 \(10\.99\.0\.1\)"):
            _lab(stand_in, dhcp_probe_s=3.0).start()
        assert read_nic_state("rnic0", stand_in.home).comparable() == before.comparable()
        with _lab(stand_in, dhcp_probe_s=3.0, force=True) as lab:
            assert lab.foreign_dhcp == ["10.99.0.1"]
            assert any("--dhcp-force" in w for w in lab.warnings)
    finally:
        foreign.stop()


def test_no_offer_means_no_foreign_server(stand_in: StandIn) -> None:
    with _lab(stand_in) as lab:
        assert lab.foreign_dhcp == []


def test_address_outside_the_lab_subnet_is_refused(stand_in: StandIn) -> None:
    stand_in.home.ip("addr", "add", "192.0.2.5/24", "dev", "rnic0")
    with pytest.raises(LabError, match=r"outside the lab subnet 10\.77\.0\.0/24: 192\.0\.2\.5/24.*--dhcp-force"):
        _lab(stand_in).start()
    assert read_nic_state("rnic0", stand_in.home).addresses == [("192.0.2.5", 24)]


def test_default_route_through_the_nic_is_refused(stand_in: StandIn) -> None:
    home = stand_in.home
    home.ip("addr", "add", "10.77.0.50/24", "dev", "rnic0")
    home.ip("link", "set", "rnic0", "up")
    home.ip("route", "add", "default", "via", "10.77.0.254")
    with pytest.raises(LabError, match="carries the default route"):
        _lab(stand_in).start()
    assert "default" in home.ip("route", "show")


def test_missing_nic_names_the_fix(stand_in: StandIn) -> None:
    lab = NicLab("nosuch0", run_id=new_run_id(), home=stand_in.home)
    with pytest.raises(LabError, match=r"no interface 'nosuch0'.*--eth-iface"):
        lab.start()


def test_empty_nic_name_asks_for_eth_iface() -> None:
    with pytest.raises(LabError, match="--eth-iface"):
        NicLab("", run_id="x")


def test_cable_pull_and_counters_on_host_side(stand_in: StandIn) -> None:
    with _lab(stand_in) as lab:
        lab.host.run("ping", "-c", "2", "-i", "0.2", "-W", "1", "10.77.0.1")
        counters = lab.interface_counters()
        assert set(counters) >= {"rx_packets", "tx_bytes"}
        lab.set_link(False)
        assert "state DOWN" in stand_in.far.ip("link", "show", stand_in.peer) or "NO-CARRIER" in stand_in.far.ip(
            "link", "show", stand_in.peer
        )
        lab.set_link(True)
        with pytest.raises(LabError, match="host end"):
            lab.set_link(False, side="dut")


@pytest.mark.parametrize(
    ("text", "speed", "duplex", "link"),
    [
        ("\tSpeed: 100Mb/s\n\tDuplex: Full\n\tLink detected: yes\n", 100, "full", True),
        ("\tSpeed: Unknown!\n\tDuplex: Unknown! (255)\n\tLink detected: no\n", None, None, False),
        ("\tSpeed: 10Mb/s\n\tDuplex: Half\n", 10, "half", None),
    ],
)
def test_ethtool_output_is_parsed(text: str, speed: int | None, duplex: str | None, link: bool | None) -> None:
    assert EthtoolInfo.parse(text) == EthtoolInfo(speed, duplex, link)
