"""The fault catalogue: DUT misbehaviours the virtual board can be started with, as data.

Each entry models a real failure mode of esp-smoltcp (docs/faults.md says where each comes from) and
names the scenario(s) of `tests/scenarios` that must catch it and the text their failure message must
contain. `hil selftest` (harness/selftest.py) proves the suite against this table; docs/faults.md shows it.

Names are the contract between the catalogue, the mechanisms in the native firmware (switched on by name
through HIL_FAULTS: the services in firmware/services, the smoltcp runtime in firmware/host/app/net_smoltcp.c,
the rest in firmware/host/app/hil_firmware_main.c; the firmware's ready line lists the names it has no
mechanism for) and `--fault NAME` on the pytest command line.

How to read `caught_by` and `collateral`: an entry is a scenario group (the module without `test_`, e.g.
``throughput``), one test (``dhcp::dhcp_renewal_between_t1_and_t2``) or one parametrised case
(``ping[1472]``), in the short names `harness.session.scenario_name` gives. A fault is detected when at
least one test matched by `caught_by` fails with `expected` in its message. Tests matched by `collateral`
may fail too (a flapping link also slows a download); every other test must pass.

A fault with a `stack` exists only in that firmware stack of the virtual board (the `shim_*` faults are
defects of the published esp-smoltcp shim, reproduced in the native firmware's shim): a run on another stack
refuses it (`validate_faults`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.errors import ConfigError


@dataclass(frozen=True)
class Fault:
    """One catalogued DUT misbehaviour.

    Attributes:
        name: the name given to ``--fault``.
        description: what the DUT does, and the real failure mode it models.
        caught_by: scenarios that must fail (see the module docstring for the pattern forms).
        expected: a fragment the failure message of a catching test contains (it names the problem).
        mechanism: how the virtual board applies it (where in the native firmware, and what it changes).
        collateral: scenarios that may also fail because of the fault, without counting as a false alarm.
        stack: the virtual board's firmware stack that has the mechanism (None: every stack).
    """

    name: str
    description: str
    caught_by: tuple[str, ...]
    expected: str
    mechanism: str
    collateral: tuple[str, ...] = ()
    stack: str | None = None

    def scenario_groups(self) -> tuple[str, ...]:
        """The scenario modules (without `test_`) the fault's catching tests live in."""
        return tuple(dict.fromkeys(scenario_group(pattern) for pattern in self.caught_by))


def scenario_group(pattern: str) -> str:
    """``ping[1472]`` -> ``ping``; ``dhcp::dhcp_lease`` -> ``dhcp``; ``throughput`` -> ``throughput``."""
    return pattern.split("::", 1)[0].split("[", 1)[0]


def matches(pattern: str, scenario: str) -> bool:
    """Whether a short scenario name (`harness.session.scenario_name`) falls under a catalogue pattern.

    A group (``ping``) matches every test of its module, a test (``dhcp::dhcp_lease``) matches itself and
    its parametrised cases, a case (``ping[1472]``) matches only itself.
    """
    if scenario == pattern:
        return True
    if scenario_group(scenario) == pattern:
        return True
    return scenario.startswith(pattern + "[")


# A fault that takes the link away breaks every scenario that needs the network.
ALL_OTHER_SCENARIOS = ("boot", "dhcp", "throughput", "select", "httpd", "mqtt", "tls", "ipv6", "mcast_l2",
                       "dhcp_edge", "robustness", "soak")  # fmt: skip

CATALOGUE: tuple[Fault, ...] = (
    Fault(
        "rx_pool_starvation",
        "Under load the RX frame pool runs empty and received frames are dropped (counted in frame_pool_drops), "
        "as with too few slab slots or a poll task that falls behind the EMAC's DMA ring.",
        ("throughput::http_upload", "throughput::iperf3_tcp[rx]"),
        "frame_pool_drops",
        "smoltcp runtime: one full-size TCP segment in 150 finds no free slot in the RX frame pool (only bulk "
        "transfers send those): dropped before smoltcp and counted in frame_pool_drops",
    ),
    Fault(
        "tx_cap_60pct",
        "Transmits at most 60 % of line rate, like the performance cliffs of CONFIG_COMPILER_OPTIMIZATION_PERF "
        "or PSRAM-backed buffers.",
        ("throughput::http_download", "throughput::iperf3_tcp[tx]"),
        "below the floor",
        "smoltcp runtime: the interface transmits at most 60 Mbit/s (a token bucket holds smoltcp back as a full "
        "TX ring does)",
    ),
    Fault(
        "rust_panic_under_load",
        "A Rust panic in the glue (an unwrap on None in iface.rs) under sustained transmit load, which calls "
        "abort() and reboots the chip.",
        ("throughput::http_download", "throughput::iperf3_tcp[tx]"),
        "DUT crashed: Rust panic",
        "hil-firmware: after 2 MB sent at more than 40 Mbit/s (its tx_bytes counter) it reports a rust_panic "
        "crash; the board prints the Rust panic and abort() dump and resets with SW_CPU_RESET",
        collateral=("httpd", "tls", "soak"),
    ),
    Fault(
        "task_wdt_under_load",
        "The poll task starves the IDLE task during sustained traffic and the task watchdog fires.",
        ("throughput::iperf3_tcp", "select"),
        "DUT crashed: watchdog timeout",
        "hil-firmware: after 1.5 s of continuous traffic above 40 Mbit/s (its rx+tx counters) it reports a wdt "
        "crash; the board prints the task_wdt report and resets",
        collateral=("httpd", "tls", "soak"),
    ),
    Fault(
        "no_dhcp_renewal",
        "Never renews or rebinds its DHCP lease, so the address silently expires (DHCP lease events are not even "
        "logged by the component).",
        ("dhcp::dhcp_renewal_between_t1_and_t2",),
        "no DHCP REQUEST",
        "smoltcp runtime: the DHCP client's renewing and rebinding REQUESTs (ciaddr set) never leave the interface",
        # The 20 s lease the renewal scenario leaves behind runs out during whatever runs next.
        collateral=("dhcp_edge", "soak", "ping"),
    ),
    Fault(
        "dhcp_nak_ignored",
        "Keeps using its address after the server NAKs the renewal instead of starting over.",
        ("dhcp_edge::nak_on_renew_rediscovers",),
        "ignored the NAK",
        "smoltcp runtime: a DHCPNAK never reaches smoltcp's DHCP client",
    ),
    Fault(
        "large_icmp_dropped",
        "Drops ICMP echo requests larger than 1000 B (a frame-pool slot or reassembly limit below the MTU).",
        ("ping[1458]", "ping[1472]"),
        "no echo reply",
        "smoltcp runtime: ICMP echo requests with more than 1000 B of payload never reach smoltcp",
    ),
    Fault(
        "link_flap_storm",
        "Its link flaps every 3 s (a marginal PHY or a bad reset GPIO): carrier drops for 0.3 s each time.",
        ("link",),
        "link_downs +",
        "hil-firmware: takes its own interface down for 0.3 s every 3 s",
        collateral=(*ALL_OTHER_SCENARIOS, "ping"),
    ),
    Fault(
        "rtt_spikes",
        "Round trips spike by tens of ms every few hundred ms (the poll task is held off by a higher-priority "
        "task, as with a vTaskDelay(1) spin in select()).",
        ("ping",),
        "ping_rtt_p99_max_ms",
        "smoltcp runtime: the poll thread is held off for 30 ms every 0.5 s; echo replies due in that window "
        "wait until it ends",
    ),
    Fault(
        "heap_leak_per_connection",
        "Leaks ~32 KiB of heap per HTTP connection (a socket's buffers never freed).",
        ("httpd::heap_over_many_connections",),
        "leaks heap per connection",
        "C httpd: allocates, writes and keeps 32 KiB per accepted connection (HIL_FAULTS)",
    ),
    Fault(
        "panic_on_nth_connection",
        "Panics on the 20th accepted HTTP connection.",
        ("httpd",),
        "DUT crashed",
        "C httpd: the 20th accepted connection crashes the firmware; the board prints the panic and resets "
        "(HIL_FAULTS)",
    ),
    Fault(
        "socket_slot_leak",
        "The select() echo service stops accepting after 24 connections: socket-handle slots are never recycled "
        "(the historical 32-entry map bug).",
        ("select::select_connection_churn", "select::select_concurrent_tcp_and_udp[limit]"),
        "not recycled",
        "C select() echo: slots are not freed on close (HIL_FAULTS)",
    ),
    Fault(
        "udp_never_readable",
        "select() never reports UDP sockets readable (the shim's zero-length recvfrom check).",
        ("select",),
        "UDP",
        "C select() echo: select() results never show the UDP sockets readable (HIL_FAULTS)",
    ),
    Fault(
        "httpd_malformed_crash",
        "Crashes on a malformed HTTP request.",
        ("httpd::malformed_request", "httpd::long_header_line"),
        "DUT crashed",
        "C httpd: an error answer other than 404 crashes the firmware instead (HIL_FAULTS)",
    ),
    Fault(
        "tls_wrong_cert",
        "Its HTTPS server presents a certificate for the wrong hostname.",
        ("tls",),
        "certificate",
        "C HTTPS server: presents wrong_host.crt (HIL_FAULTS)",
    ),
    Fault(
        "no_mqtt_reconnect",
        "Does not reconnect to the MQTT broker after the broker restarts.",
        ("mqtt",),
        "reconnect",
        "C MQTT client: gives up after the first drop (HIL_FAULTS)",
    ),
    Fault(
        "l2_tap_deaf",
        "The L2 tap never delivers frames, so EtherType 0x88B5 frames are not echoed.",
        ("mcast_l2",),
        "0x88b5",
        "C L2 echo: the taps count frames and never echo (HIL_FAULTS)",
    ),
    Fault(
        "mcast_deaf",
        "Ignores `mcast join`: no IGMP report, no echo of group datagrams.",
        ("mcast_l2",),
        "IGMP",
        "C multicast echo: `mcast join` answers ok and joins nothing (HIL_FAULTS)",
    ),
    Fault(
        "ipv6_ll_missing",
        "Has no IPv6 link-local address (IPv6 left off on its interface).",
        ("ipv6",),
        "link-local",
        "smoltcp runtime: the interface gets no IPv6 link-local address",
    ),
    # The published esp_smoltcp_lwip_compat's defects (CONTEXT.md), each switched on in the native firmware's
    # shim (firmware/host/shim/sockshim.c, HIL_FAULTS) through the published glue's own smoltcp calls.
    Fault(
        "shim_udp_select_consumes",
        "select() probes UDP readability with a zero-length recvfrom, which smoltcp 0.12's recv_slice answers by "
        "dequeuing the datagram and reporting it truncated: UDP sockets never read as readable and the datagram a "
        "select() loop waits for is gone.",
        ("shim_defects::select_wakes_for_a_lone_udp_datagram",),
        "shim_udp_select_consumes",
        "shim: select()/poll() probe every UDP socket watched for reading with the glue's zero-length "
        "recv_slice (hs_glue_udp_recv_slice: the datagram is dequeued) and never report it readable",
        collateral=("select", "mcast_l2"),
        stack="smoltcp",
    ),
    Fault(
        "shim_fin_not_readable",
        "A peer's FIN never makes a socket readable: the glue's \"connected\" (may_recv() || may_send()) stays "
        "true in CLOSE-WAIT, so select() waits on and a non-blocking recv() returns EWOULDBLOCK forever.",
        (
            "shim_defects::peer_fin_ends_the_echo_connection",
            "shim_defects::httpd_answers_after_20_clients_that_close_first",
        ),
        "shim_fin_not_readable",
        "shim: a TCP socket with nothing queued reads as readable, and recv() returns 0, only once the glue's "
        "may_recv() || may_send() (hs_glue_tcp_is_connected) is false",
        collateral=("select", "httpd", "mqtt", "tls", "throughput", "soak"),
        stack="smoltcp",
    ),
    Fault(
        "shim_close_without_fin",
        "close() (and shutdown(), which is the same call in the published shim) removes the socket from smoltcp "
        "right after close(): no FIN reaches the peer, which waits for an end that never comes (and is reset "
        "when it sends again).",
        ("shim_defects::server_close_reaches_the_client_as_eof", "shim_defects::peer_fin_ends_the_echo_connection"),
        "shim_close_without_fin",
        "shim: close() and shutdown() of a TCP socket call the glue's close-then-remove (hs_glue_close), so the "
        "socket leaves smoltcp's set before its FIN can",
        collateral=("httpd", "throughput", "tls", "mqtt", "select", "soak"),
        stack="smoltcp",
    ),
    Fault(
        "shim_loopback_recv_ignored",
        "recv() on a UDP socket bound to 127.0.0.1 reads smoltcp instead of the in-RAM loopback queue: "
        "esp_http_server reads its control socket with recv(), so its control messages (session purge, queued "
        "work) never arrive and the server wedges once its sessions are full (ESP-IDF < 5.5.3 or without "
        "CONFIG_HTTPD_QUEUE_WORK_BLOCKING).",
        ("shim_defects::httpd_control_socket_path_delivers",),
        "shim_loopback_recv_ignored",
        "shim: recv() and read() of a 127.x-bound UDP socket read its unbound smoltcp socket, never the loopback "
        "queue, and return 0 when the receive timeout (SO_RCVTIMEO, else the published 30 s) passes; select() "
        "still sees the queue",
        stack="smoltcp",
    ),
    Fault(
        "shim_loopback_port0_refused",
        "The in-RAM loopback refuses bind(127.0.0.1:0), so a UDP socket cannot let the stack pick its loopback port.",
        ("shim_defects::loopback_bind_to_port_zero",),
        "shim_loopback_port0_refused",
        "shim: bind() of a UDP socket to a 127.x address with port 0 fails with EINVAL",
        stack="smoltcp",
    ),
)

FAULTS: dict[str, Fault] = {fault.name: fault for fault in CATALOGUE}


def get(name: str) -> Fault:
    """The catalogue entry called ``name``.

    Raises:
        ConfigError: no such fault (the message lists the catalogue).
    """
    validate_faults([name])
    return FAULTS[name]


def validate_faults(names: Iterable[str], stack: str | None = None) -> list[str]:
    """Check names given to ``--fault``; return them in order without duplicates.

    Args:
        names: the fault names.
        stack: the firmware stack the virtual board runs; None accepts the faults of every stack.

    Raises:
        ConfigError: a name is not in the catalogue (the message lists every known fault), or a fault
            exists only in another stack (the message says which stack has it).
    """
    names = list(dict.fromkeys(names))
    unknown = [name for name in names if name not in FAULTS]
    if unknown:
        listing = "\n".join(f"  {fault.name:<26} {fault.description.split('. ')[0]}" for fault in CATALOGUE)
        raise ConfigError(
            f"unknown fault(s) {', '.join(unknown)}; the virtual board knows these "
            f"(harness/boards/virtual/faults.py, docs/faults.md):\n{listing}"
        )
    elsewhere = [
        f"fault {n} exists only in the {FAULTS[n].stack} stack" for n in names if FAULTS[n].stack not in (None, stack)
    ]
    if stack is not None and elsewhere:
        raise ConfigError(
            f"{'; '.join(elsewhere)} of the virtual board, and this run's virtual board runs the {stack} stack: "
            "choose that stack with --virtual-stack, or leave the fault out (docs/faults.md)"
        )
    return names


def catalogue_markdown() -> str:
    """The catalogue as a Markdown table (docs/faults.md embeds it; a test keeps the two in sync)."""
    rows = [
        "| fault | what the DUT does | caught by | failure names | mechanism on the virtual board |",
        "|---|---|---|---|---|",
    ]
    for fault in CATALOGUE:
        caught = ", ".join(f"`{pattern}`" for pattern in fault.caught_by)
        mechanism = f"{fault.mechanism} ({fault.stack} stack only)" if fault.stack else fault.mechanism
        rows.append(f"| `{fault.name}` | {fault.description} | {caught} | `{fault.expected}` | {mechanism} |")
    return "\n".join(rows) + "\n"
