"""The firmware's C MQTT echo client (firmware/services/src/mqtt_client.c) against a real mosquitto on loopback.

The lab's paho probe (`harness.lab.mqtt_probe.MqttProbe`) publishes to `hil/<mac12>/in` and waits for the echo on
`hil/<mac12>/out`; the broker is restarted to prove the reconnect; mqtts:// is verified against the HIL test CA.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from harness.lab.mqtt_probe import MqttProbe, echo_topics, payload
from harness.lab.peers import LAB_SERVER, TEST_CA, WRONG_HOST, CertPair
from harness.services_program import MAC, ServicesProgram, check_clean_exit
from harness.testing import wait_for

pytestmark = [
    pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (apt-get install gcc)"),
    pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto (apt-get install mosquitto)"),
]

T = TypeVar("T")
HOST = "127.0.0.1"
SIZES = (16, 1024, 16384, 65536)  # PROTOCOL.md: payloads up to 64 KiB are echoed whole


class _Here:
    """This network namespace, with the `call` a lab namespace offers (for MqttProbe)."""

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None, **kwargs: Any) -> T:
        return fn(*args, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Mosquitto:
    """A real mosquitto on loopback: plain on `port`, TLS with `cert` on `tls_port`."""

    def __init__(self, work_dir: Path, cert: CertPair = LAB_SERVER) -> None:
        self.port, self.tls_port = free_port(), free_port()
        self.config = work_dir / f"mosquitto-{self.port}.conf"
        self.log = work_dir / f"mosquitto-{self.port}.log"
        self.config.write_text(
            "persistence false\nuser root\nset_tcp_nodelay true\nlog_dest stdout\n"
            f"listener {self.port} {HOST}\nallow_anonymous true\n"
            f"listener {self.tls_port} {HOST}\nallow_anonymous true\n"
            f"cafile {TEST_CA.cert}\ncertfile {cert.cert}\nkeyfile {cert.key}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        if not wait_for(self._accepts, 10):
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-500:]}")
        return self

    def _accepts(self) -> bool:
        try:
            socket.create_connection((HOST, self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None

    @property
    def uri(self) -> str:
        return f"mqtt://{HOST}:{self.port}"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()


@pytest.fixture(scope="module")
def program() -> Iterator[ServicesProgram]:
    services = ServicesProgram(["--http", "0"])
    with services:
        yield services
        check_clean_exit(services)


@pytest.fixture
def connected(program: ServicesProgram, broker: Mosquitto) -> Iterator[dict[str, Any]]:
    reply = program.command(f"mqtt connect {broker.uri}")
    assert reply["ok"], reply
    try:
        yield reply
    finally:
        program.command("mqtt disconnect")


def probe(broker: Mosquitto) -> MqttProbe:
    return MqttProbe(_Here(), HOST, broker.port, MAC)  # type: ignore[arg-type]


def test_connect_names_the_topics(connected: dict[str, Any], broker: Mosquitto) -> None:
    topic_in, topic_out = echo_topics(MAC)
    assert connected["cmd"] == "mqtt" and connected["action"] == "connect" and connected["uri"] == broker.uri
    assert (
        (connected["topic_in"], connected["topic_out"])
        == (topic_in, topic_out)
        == ("hil/020000123456/in", "hil/020000123456/out")
    )
    assert 0 <= connected["connect_ms"] < 10_000
    with probe(broker) as client:
        client.wait_until_echoing(timeout=5)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_every_message_comes_back_unchanged(program: ServicesProgram, connected: dict[str, Any],
                                            broker: Mosquitto, qos: int) -> None:  # fmt: skip
    echoed_before = program.command("stats")["mqtt"]["echoed"]
    with probe(broker) as client:
        client.wait_until_echoing(timeout=5)
        for size in SIZES:
            for seq in range(5):
                assert client.round_trip(payload(seq, size), qos=qos, timeout=5) is not None, (
                    f"QoS {qos} message {seq} of {size} B not echoed"
                )
    assert program.command("stats")["mqtt"]["echoed"] >= echoed_before + 5 * len(SIZES)


def test_a_message_larger_than_the_buffer_is_skipped_not_fatal(program: ServicesProgram, connected: dict[str, Any],
                                                                broker: Mosquitto) -> None:  # fmt: skip
    too_large_before = program.command("stats")["mqtt"]["too_large"]
    with probe(broker) as client:
        client.wait_until_echoing(timeout=5)
        assert client.round_trip(payload(1, 200_000), qos=1, timeout=2) is None, "PROTOCOL.md: not echoed"
        assert client.round_trip(payload(2, 1000), qos=1, timeout=5) is not None, "the client stopped echoing"
    assert program.command("stats")["mqtt"]["too_large"] == too_large_before + 1


def test_reconnects_after_a_broker_restart(program: ServicesProgram, connected: dict[str, Any],
                                          broker: Mosquitto) -> None:  # fmt: skip
    mark = len(program.events)
    broker.stop()
    down = program.wait_event(lambda e: e["event"] == "mqtt", timeout=10, since=mark)
    assert (down["state"], down["uri"], down["iface"]) == ("disconnected", broker.uri, "eth")
    broker.start()
    back_at = time.monotonic()
    program.wait_event(lambda e: e["event"] == "mqtt" and e["state"] == "connected", timeout=15, since=mark)
    print(f"reconnected {time.monotonic() - back_at:.2f} s after the broker came back")
    with probe(broker) as client:
        client.wait_until_echoing(timeout=5)


def test_mqtts_verifies_the_broker(program: ServicesProgram, broker: Mosquitto) -> None:
    reply = program.command(f"mqtt connect mqtts://{HOST}:{broker.tls_port}")
    try:
        assert reply["ok"], reply
        with probe(broker) as client:
            client.wait_until_echoing(timeout=5)
            assert client.round_trip(payload(7, 65536), qos=1, timeout=5) is not None
    finally:
        program.command("mqtt disconnect")


def test_mqtts_refuses_a_broker_with_another_host_name(program: ServicesProgram, tmp_path: Path) -> None:
    impostor = Mosquitto(tmp_path, cert=WRONG_HOST).start()
    try:
        reply = program.command(f"mqtt connect mqtts://{HOST}:{impostor.tls_port}")
    finally:
        impostor.stop()
    assert not reply["ok"] and reply["error"].startswith("connect failed: certificate"), reply


def test_command_errors(program: ServicesProgram, connected: dict[str, Any], broker: Mosquitto) -> None:
    assert program.command(f"mqtt connect {broker.uri}")["error"] == "already connected"
    assert program.command("mqtt")["error"] == "usage: mqtt connect <uri> | mqtt disconnect"
    assert program.command("mqtt disconnect") == {"cmd": "mqtt", "ok": True, "action": "disconnect"}
    assert program.command("mqtt disconnect") == {"cmd": "mqtt", "ok": False, "error": "not connected"}
    for uri in ("http://127.0.0.1:1883", "mqtt://", "mqtt://h:0"):
        reply = program.command(f"mqtt connect {uri}")
        assert (reply["ok"], reply["error"], reply["uri"]) == (False, "connect failed: bad uri", uri)
    reply = program.command(f"mqtt connect mqtt://{HOST}:{free_port()}")
    assert reply["error"] == "connect failed: connection refused"


def test_a_broker_that_never_answers_times_out(program: ServicesProgram) -> None:
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(1)
        started = time.monotonic()
        reply = program.command(f"mqtt connect mqtt://{HOST}:{silent.getsockname()[1]}", timeout=30)
    assert (reply["ok"], reply["error"]) == (False, "timeout")
    assert 9 < time.monotonic() - started < 16, "PROTOCOL.md: up to 10 s for the CONNACK"
    assert program.command("mqtt disconnect")["error"] == "not connected"


def test_fault_no_mqtt_reconnect_gives_up_after_a_drop(tmp_path: Path) -> None:
    mosquitto = Mosquitto(tmp_path).start()
    try:
        with ServicesProgram(["--http", "0"], faults=("no_mqtt_reconnect",)) as faulty:
            assert faulty.command(f"mqtt connect {mosquitto.uri}")["ok"]
            mosquitto.stop()
            faulty.wait_event(lambda e: e.get("state") == "disconnected", timeout=10)
            mosquitto.start()
            with pytest.raises(TimeoutError):
                faulty.wait_event(lambda e: e.get("state") == "connected", timeout=6)
            assert faulty.command(f"mqtt connect {mosquitto.uri}")["error"] == "already connected"
            assert faulty.command("mqtt disconnect")["ok"]
            check_clean_exit(faulty)
    finally:
        mosquitto.stop()
