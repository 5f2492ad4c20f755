"""MQTT: the DUT's echo client against a real mosquitto broker in the lab.

The DUT connects with `mqtt connect mqtt://<lab host>:1883`, subscribes to `hil/<mac12>/in` and echoes
to `hil/<mac12>/out`. A paho client in the lab measures QoS 0/1/2 round trips for payloads from 16 B
to 64 KiB; the last test restarts the broker and times the DUT's reconnect.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.boards.board import Board
from harness.errors import DutTimeoutError
from harness.lab.mqtt_probe import MqttProbe, payload
from harness.lab.traffic import percentile

# (payload bytes, messages): fewer of the big ones keep the module fast.
SIZES = ((16, 30), (1024, 20), (16384, 10), (65536, 5))
ECHO_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def dut_mqtt(board: Board, mqtt_broker: Any) -> Iterator[dict[str, Any]]:
    """The DUT connected to the lab broker; disconnected after the module."""
    board.wait_for_ip()
    reply = board.command(f"mqtt connect {mqtt_broker.uri}", timeout=15)
    assert reply.get("ok"), f"`mqtt connect {mqtt_broker.uri}` failed on the DUT: {reply.get('error')}"
    try:
        yield reply
    finally:
        board.command("mqtt disconnect")


def _probe(lab: Any, mqtt_broker: Any, board: Board) -> MqttProbe:
    return MqttProbe(lab.host, mqtt_broker.host, mqtt_broker.port, board.hello.get("mac") or board.ip_info()["mac"])


def test_connect(board: Board, lab: Any, mqtt_broker: Any, dut_mqtt: dict[str, Any], metrics: Any) -> None:
    """The DUT's reply names its topics; its echo works within a few seconds of the CONNACK."""
    with _probe(lab, mqtt_broker, board) as probe:
        assert (dut_mqtt.get("topic_in"), dut_mqtt.get("topic_out")) == (probe.topic_in, probe.topic_out)
        ready_s = probe.wait_until_echoing(timeout=5)
    metrics.record("mqtt_connect_ms", dut_mqtt.get("connect_ms", 0), "ms", "lower")
    metrics.record("mqtt_echo_ready_ms", ready_s * 1000, "ms", "lower")


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_round_trip(board: Board, lab: Any, mqtt_broker: Any, dut_mqtt: dict[str, Any], hil_config: Any,
                    metrics: Any, qos: int) -> None:  # fmt: skip
    """Every message comes back unchanged; latency percentiles per payload size."""
    lost: list[str] = []
    with _probe(lab, mqtt_broker, board) as probe:
        probe.wait_until_echoing(timeout=5)
        sent = answered = 0
        for size, count in SIZES:
            rtts = []
            for seq in range(count):
                rtt = probe.round_trip(payload(seq, size), qos=qos, timeout=ECHO_TIMEOUT_S)
                sent += 1
                if rtt is not None:
                    rtts.append(rtt * 1000)
            answered += len(rtts)
            if len(rtts) < count:
                lost.append(f"{count - len(rtts)} of {count} at {size} B")
            if rtts:
                metrics.record(f"mqtt_rtt_p50_ms_{size}B", percentile(rtts, 50), "ms", "lower")
                metrics.record(f"mqtt_rtt_p99_ms_{size}B", percentile(rtts, 99), "ms", "lower")
    loss_pct = 100 * (sent - answered) / sent
    metrics.record("mqtt_loss_pct", loss_pct, "%", "lower")
    allowed = hil_config.thresholds.mqtt_loss_max_pct
    assert loss_pct <= allowed, f"MQTT QoS {qos} echoes lost: {', '.join(lost)} (allowed {allowed} %)"


def test_broker_restart(board: Board, lab: Any, mqtt_broker: Any, dut_mqtt: dict[str, Any], hil_config: Any,
                        metrics: Any) -> None:  # fmt: skip
    """After a broker restart the DUT reconnects on its own (HIL_EVENT mqtt connected) and echoes again."""
    bound = hil_config.thresholds.mqtt_reconnect_max_s
    console = board.monitor
    mark = console.mark()
    mqtt_broker.stop()
    mqtt_broker.start()
    back_at = time.time()  # the broker accepts connections again from here
    try:
        line = console.wait_for(
            lambda ln: ln.machine is not None and ln.machine.fields.get("event") == "mqtt"
            and ln.machine.fields.get("state") == "connected",
            since=mark, timeout=bound, what="HIL_EVENT mqtt connected",
        )  # fmt: skip
    except DutTimeoutError:
        pytest.fail(f"the DUT did not reconnect to the MQTT broker within {bound:g} s after a broker restart "
                    "(no HIL_EVENT mqtt state=connected)", pytrace=False)  # fmt: skip
    reconnect_s = max(0.0, line.host_time - back_at)
    metrics.record("mqtt_reconnect_s", reconnect_s, "s", "lower")
    with _probe(lab, mqtt_broker, board) as probe:
        probe.wait_until_echoing(timeout=5)
