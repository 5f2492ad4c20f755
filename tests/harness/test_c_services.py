"""The firmware's portable C: host build (cached, concurrent-safe), C unit tests, the services program."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from harness.boards.virtual import cbuild
from harness.errors import ConfigError, MissingToolError
from harness.services_program import ServicesProgram

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (apt-get install gcc)")


def run(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60, check=False)


def test_c_unit_tests_pass_on_the_golden_vectors() -> None:
    result = run(cbuild.build_c_tests())
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failures" in result.stdout
    vectors = json.loads(cbuild.vectors_file().read_text())
    assert f"line vectors: {len(vectors['lines'])} checked" in result.stdout


def test_c_unit_tests_pass_under_address_and_undefined_behaviour_sanitizers() -> None:
    result = run(cbuild.build_c_tests(sanitize=True))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failures" in result.stdout and "runtime error" not in result.stderr


def test_c_unit_tests_fail_on_a_wrong_vector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIL_CACHE_DIR", str(tmp_path / "cache"))
    vectors = json.loads(cbuild.vectors_file().read_text())
    vectors["commands"].append({"input": "stats  period 5", "argv": ["stats", "period", "6"]})
    vectors["lines"][0]["fields"]["app"] = "not what the line says"
    wrong = tmp_path / "vectors.json"
    wrong.write_text(json.dumps(vectors))
    result = run(cbuild.build_c_tests(wrong))
    assert result.returncode == 1
    assert "split 'stats  period 5' word 2: '5', want '6'" in result.stdout
    # The changed field still formats canonically, but no longer equals the golden line text.
    assert f"{len(vectors['lines']) - 1} identical to the golden line text" in result.stdout


def test_build_is_cached_and_keyed_by_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIL_CACHE_DIR", str(tmp_path))
    first = cbuild.build_services()
    assert first.parent.parent == tmp_path
    mtime = first.stat().st_mtime_ns
    assert cbuild.build_services() == first
    assert first.stat().st_mtime_ns == mtime
    # Different flags give a different cache entry.
    monkeypatch.setattr(cbuild, "CFLAGS", (*cbuild.CFLAGS, "-DHIL_TEST_VARIANT=1"))
    assert cbuild.build_services() != first


def test_concurrent_builds_share_one_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIL_CACHE_DIR", str(tmp_path))
    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(cbuild.build_services())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(results) == 2 and results[0] == results[1]
    assert run(results[0]).returncode == 2  # usage: the binary is complete
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_missing_compiler_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-cc-hil")
    with pytest.raises(MissingToolError, match=r"no C compiler 'no-such-cc-hil'.*apt-get install gcc"):
        cbuild.build_services()


def test_missing_vectors_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"vectors file .* not found"):
        cbuild.build_c_tests(tmp_path / "nope.json")


def test_services_program_rejects_bad_arguments() -> None:
    binary = cbuild.build_services()
    for args, message in (
        ((), "no service chosen"),
        (("--iperf3", "70000"), "--iperf3 must be a number in 0..65535"),
        (("--select-echo", "1", "2"), "--select-echo needs TCP_PORT UDP_BASE COUNT"),
        (("--select-echo", "0", "0", "99"), "COUNT must be a number in 0..8"),
        (("--frob",), "unknown option '--frob'"),
    ):
        result = run(binary, *args)
        assert result.returncode == 2, args
        assert message in result.stderr


def test_services_program_reports_ports_stats_and_quits() -> None:
    services = ServicesProgram(
        ["--iperf3", "0", "--select-echo", "0", "0", "2", "--tcp-echo", "0", "--udp-echo", "0"],
        sanitized=False,
        certs=False,
        mac=None,
    )
    with services:
        assert set(services.services) == {"iperf3", "select_echo", "tcp_echo", "udp_echo"}
        assert len(services.udp_ports("select_echo")) == 2
        assert all(port > 0 for port in (services.tcp_port("iperf3"), services.tcp_port("tcp_echo")))
        stats = services.stats()
        assert stats["select_echo"]["udp_sockets"] == 2
        assert stats["select_echo"]["open_tcp_clients"] == 0
        assert stats["iperf3"] == {"tests_done": 0, "tests_failed": 0, "access_denied": 0}
    assert services.close() is None  # already stopped by the context manager


def test_a_taken_port_fails_startup_clearly() -> None:
    with ServicesProgram(["--tcp-echo", "0"], sanitized=False, certs=False, mac=None) as first:
        port = first.tcp_port("tcp_echo")
        with pytest.raises(Exception, match="a service failed to start") as info:
            ServicesProgram(["--tcp-echo", str(port)], sanitized=False, certs=False, mac=None).start()
        assert f"port {port}" in str(info.value)


def test_tcp_and_udp_echo() -> None:
    with ServicesProgram(["--tcp-echo", "0", "--udp-echo", "0"], sanitized=False, certs=False, mac=None) as services:
        payload = bytes(range(256)) * 40
        with socket.create_connection(("127.0.0.1", services.tcp_port("tcp_echo")), timeout=5) as sock:
            sock.sendall(payload)
            echoed = b""
            while len(echoed) < len(payload):
                chunk = sock.recv(65536)
                assert chunk, "echo connection closed early"
                echoed += chunk
        assert echoed == payload
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(5)
            for size in (1, 512, 1472):
                udp.sendto(payload[:size], ("127.0.0.1", services.udp_ports("udp_echo")[0]))
                assert udp.recv(4096) == payload[:size]
