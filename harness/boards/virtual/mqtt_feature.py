"""`mqtt connect <uri>` / `mqtt disconnect` on the virtual board: an MQTT echo client like hil_app's esp-mqtt one.

The client subscribes to `hil/<mac12>/in` (QoS 1) and republishes every message to `hil/<mac12>/out`
with the same payload and QoS. It reconnects on its own after the broker goes away, printing
`HIL_EVENT mqtt` state changes, unless the board runs with the `no_mqtt_reconnect` fault.
"""

from __future__ import annotations

import ssl
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from harness.boards.virtual.registry import command, fault_mechanism
from harness.lab.peers import TEST_CA

if TYPE_CHECKING:
    from harness.boards.virtual.firmware import Firmware

fault_mechanism("no_mqtt_reconnect")  # catalogue faults (faults.py) this module implements


USAGE = "usage: mqtt connect <uri> | mqtt disconnect"
CONNECT_TIMEOUT_S = 10.0
# hil_app sets esp-mqtt's buffer to this size; larger messages arrive split and are not echoed.
MAX_MESSAGE_BYTES = 64 * 1024 + 512
# esp-mqtt retries after `reconnect_timeout_ms`; paho backs off from 1 s, which a restart shows clearly.
RECONNECT_DELAY_S = (1, 4)


class MqttEcho:
    """One connection of the echo client."""

    def __init__(self, fw: Firmware, uri: str) -> None:
        self.fw = fw
        self.uri = uri
        mac12 = fw.mac.replace(":", "").lower()
        self.topic_in, self.topic_out = f"hil/{mac12}/in", f"hil/{mac12}/out"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hil-{mac12}", clean_session=True)
        self.client.reconnect_delay_set(*RECONNECT_DELAY_S)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.failed: str | None = None
        self.was_connected = False
        self.closing = False

    def connect(self) -> None:
        """Open the connection and wait for the CONNACK (raises on failure)."""
        parts = urlsplit(self.uri)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("bad uri")
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        if parts.scheme == "mqtts":
            self.client.tls_set(ca_certs=str(TEST_CA.cert), cert_reqs=ssl.CERT_REQUIRED)
        self.client.connect_async(parts.hostname, port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.failed = str(reason)
            return
        client.subscribe(self.topic_in, qos=1)
        if self.was_connected:
            self._event("connected")  # a reconnect after the command already replied
        self.was_connected = True
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        if self.closing or not self.was_connected:
            return
        self._event("disconnected")
        if self.fw.has_fault("no_mqtt_reconnect"):
            # The fault: the client gives up after losing the broker (stopped from outside its own thread).
            threading.Thread(target=client.loop_stop, name="mqtt-giveup", daemon=True).start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.topic_in and len(message.payload) <= MAX_MESSAGE_BYTES:
            client.publish(self.topic_out, message.payload, qos=message.qos)

    def _event(self, state: str) -> None:
        self.fw.console.machine("HIL_EVENT", {"event": "mqtt", "iface": "eth", "state": state, "uri": self.uri})

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.closing = True
        self.client.disconnect()
        self.client.loop_stop()


_client: dict[str, MqttEcho] = {}


@command("mqtt", "mqtt connect <uri> | mqtt disconnect")
def mqtt_command(fw: Firmware, args: list[str]) -> None:
    if len(args) == 2 and args[0] == "connect":
        _connect(fw, args[1])
    elif args == ["disconnect"]:
        echo = _client.pop("active", None)
        if echo is None:
            fw.result("mqtt", ok=False, error="not connected")
            return
        echo.close()
        fw.result("mqtt", action="disconnect")
    else:
        fw.result("mqtt", ok=False, error=USAGE)


def _connect(fw: Firmware, uri: str) -> None:
    if "active" in _client:
        fw.result("mqtt", ok=False, error="already connected")
        return
    echo = MqttEcho(fw, uri)
    started = time.monotonic()
    try:
        echo.connect()
    except (ValueError, OSError) as exc:
        fw.result("mqtt", ok=False, error=f"connect failed: {exc}", uri=uri)
        return
    deadline = started + CONNECT_TIMEOUT_S
    while not echo.connected.wait(0.05):
        if echo.failed or time.monotonic() > deadline:
            echo.close()
            error = f"connect failed: {echo.failed}" if echo.failed else "timeout"
            fw.result("mqtt", ok=False, error=error, uri=uri)
            return
    _client["active"] = echo
    fw.on_shutdown(echo.close)
    fw.result("mqtt", action="connect", uri=uri, topic_in=echo.topic_in, topic_out=echo.topic_out,
              connect_ms=int((time.monotonic() - started) * 1000))  # fmt: skip
