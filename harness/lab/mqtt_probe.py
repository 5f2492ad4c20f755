"""A paho MQTT client in the lab's host namespace that measures round trips through the DUT's MQTT echo.

It publishes to the DUT's `hil/<mac12>/in` topic and waits for the same payload on `hil/<mac12>/out`.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from harness.errors import LabError
from harness.lab.netns import Namespace

SUBSCRIBE_TIMEOUT_S = 5.0


def echo_topics(mac: str) -> tuple[str, str]:
    """The DUT's (in, out) topics for its MAC `aa:bb:...`."""
    mac12 = mac.replace(":", "").lower()
    return f"hil/{mac12}/in", f"hil/{mac12}/out"


def payload(seq: int, size: int) -> bytes:
    """A payload of ``size`` bytes (>= 8) that starts with a unique sequence number and run id."""
    head = seq.to_bytes(4, "big") + os.urandom(4)
    return (head + bytes(range(256)) * (size // 256 + 1))[:size]


class MqttProbe:
    """Round trips through the DUT's echo; the client's socket lives in ``ns``.

    Args:
        ns: the lab's host namespace.
        host: broker address.
        port: broker port.
        mac: the DUT's MAC (names its topics).
    """

    def __init__(self, ns: Namespace, host: str, port: int, mac: str) -> None:
        self.ns, self.host, self.port = ns, host, port
        self.topic_in, self.topic_out = echo_topics(mac)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hil-probe-{os.getpid()}-{time.time_ns()}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.received: queue.Queue[tuple[bytes, float]] = queue.Queue()
        self._subscribed = threading.Event()

    def __enter__(self) -> MqttProbe:
        try:
            # connect() opens the socket: do it on a thread inside the namespace.
            self.ns.call(self.client.connect, self.host, self.port, 30, timeout=10)
        except (OSError, TimeoutError) as exc:
            raise LabError(f"the lab's MQTT client cannot reach the broker at {self.host}:{self.port}: {exc}") from exc
        sock = self.client.socket()
        if sock is not None:
            # The lab's client must not add Nagle delays of its own to the DUT's round trips.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()
        self.client.subscribe(self.topic_out, qos=2)
        if not self._subscribed.wait(SUBSCRIBE_TIMEOUT_S):
            self.close()
            raise LabError(f"the broker did not acknowledge the subscription to {self.topic_out}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect and stop the client's thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.received.put((bytes(message.payload), time.perf_counter()))

    def round_trip(self, data: bytes, qos: int, timeout: float) -> float | None:
        """Publish ``data`` and return the seconds until it came back, or None if it did not within ``timeout``."""
        started = time.perf_counter()
        self.client.publish(self.topic_in, data, qos=qos)
        deadline = started + timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
            try:
                got, at = self.received.get(timeout=remaining)
            except queue.Empty:
                return None
            if got == data:
                return at - started
            # anything else is a late echo of an earlier message that timed out: skip it

    def wait_until_echoing(self, timeout: float) -> float:
        """Probe (QoS 1, 16 B) until the DUT echoes; its subscription may lag its CONNACK. Returns seconds taken."""
        started = time.perf_counter()
        seq = 0
        while time.perf_counter() - started < timeout:
            seq += 1
            if self.round_trip(payload(0xFFFF0000 + seq, 16), qos=1, timeout=0.5) is not None:
                return time.perf_counter() - started
        raise AssertionError(f"the DUT does not echo MQTT messages from {self.topic_in} to {self.topic_out} "
                             f"within {timeout:g} s")  # fmt: skip
