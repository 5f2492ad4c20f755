"""The HIL suite: scenarios talk only to the board, lab, console and results interfaces.

This file adds the suite's own options and the application peers (MQTT broker, TLS servers) that live
in the lab's host namespace; each peer is started once per module that uses it and stopped after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.lab.peers import LAB_SERVER, WRONG_HOST, MosquittoBroker, TlsHttpServer

LAB_TLS_PORT = 4443
WRONG_HOST_TLS_PORT = 4444


def pytest_configure(config: pytest.Config) -> None:
    """Markers of the suite itself."""
    config.addinivalue_line(
        "markers",
        "known_shim_defect(name): catches a known esp-smoltcp shim defect (tests/scenarios/test_shim_defects.py)",
    )
    config.addinivalue_line(
        "markers",
        "known_behaviour(component, versions, behaviour): a strict xfail on a board whose firmware reports "
        "`component` (HIL_HELLO.components) at a version starting with one of `versions` (docs/scenarios.md)",
    )


@pytest.fixture(autouse=True)
def _known_behaviour(request: pytest.FixtureRequest) -> None:
    """A scenario that fails on one component's known behaviour is a strict xfail where the board reports it.

    The test keeps its assertions: it must fail there (a pass means the behaviour changed and the marker is
    out of date), and it must pass everywhere else. The board is asked only when the marker is there.
    """
    for marker in request.node.iter_markers("known_behaviour"):
        component, versions, behaviour = marker.args
        version = request.getfixturevalue("board").components().get(component)
        if version is not None and version.startswith(tuple(versions)):
            request.applymarker(pytest.mark.xfail(strict=True, reason=f"{component} {version}: {behaviour}"))
            return


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options of the scenario suite."""
    group = parser.getgroup("esp-smoltcp-hil")
    group.addoption("--soak-minutes", type=float, default=10.0,
                    help="duration of the soak scenario in minutes (with --soak; default 10)")  # fmt: skip


# Tests whose length is an option: pytest-timeout's limit (`timeout` in pyproject.toml) is stretched to fit it,
# with room for what a test does past its own deadline (a fuzz case's reset and replay, the last soak round).
LENGTH_OPTIONS = (("fuzz", "fuzz_minutes"), ("soak", "soak_minutes"))
LENGTH_MARGIN_S = 600


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A `fuzz` or `soak` test may run --fuzz-minutes / --soak-minutes, plus the margin."""
    for marker, dest in LENGTH_OPTIONS:
        minutes = getattr(config.option, dest, None)
        if not minutes:
            continue
        for item in items:
            if item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.timeout(minutes * 60 + LENGTH_MARGIN_S))


@pytest.fixture(scope="module")
def mqtt_broker(lab: Any, hil_session: Any) -> Iterator[MosquittoBroker]:
    """A mosquitto broker on the lab host address (1883, and 8883 with TLS), for one module."""
    broker = MosquittoBroker(lab, hil_session.record.artifacts_dir / "peers")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def tls_servers(lab: Any) -> Iterator[dict[str, TlsHttpServer]]:
    """HTTPS servers on the lab host address: `lab` (a certificate for 10.77.0.1) and `wrong_host`."""
    servers = {
        "lab": TlsHttpServer(lab, LAB_TLS_PORT, LAB_SERVER).start(),
        "wrong_host": TlsHttpServer(lab, WRONG_HOST_TLS_PORT, WRONG_HOST).start(),
    }
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()
