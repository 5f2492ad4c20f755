"""The golden vectors of firmware/protocol_vectors.json decode with the harness's own codec."""

from __future__ import annotations

import json

import pytest

from harness.console.protocol import KEYWORDS, format_machine_line, parse_machine_line, split_command
from tests.harness.firmware.conftest import REPO

VECTORS = json.loads((REPO / "firmware" / "protocol_vectors.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("vector", VECTORS["lines"], ids=lambda v: v["line"][:60])
def test_line_decodes_to_its_fields(vector: dict) -> None:
    record = parse_machine_line(vector["line"])
    assert record is not None
    assert (record.keyword, record.level, record.ms) == (vector["keyword"], vector["level"], vector["ms"])
    assert record.fields == vector["fields"]
    assert record.fields["proto"] == VECTORS["proto"]
    assert record.keyword in KEYWORDS


@pytest.mark.parametrize("vector", VECTORS["lines"], ids=lambda v: v["line"][:60])
def test_line_is_what_the_encoder_writes(vector: dict) -> None:
    fields = {k: v for k, v in vector["fields"].items() if k != "proto"}
    assert format_machine_line(vector["keyword"], vector["ms"], fields, vector["level"]) == vector["line"]


@pytest.mark.parametrize("vector", VECTORS["commands"], ids=lambda v: repr(v["input"]))
def test_command_splits_to_argv(vector: dict) -> None:
    assert split_command(vector["input"]) == vector["argv"]


PROTOCOL_COMMANDS = frozenset(
    {"help", "version", "ip", "stats", "reboot", "crash", "mqtt", "tls", "mcast", "l2tap", "sockets", "heap"}
)


def test_every_protocol_command_has_a_vector() -> None:
    words = {v["argv"][0] for v in VECTORS["commands"] if v["argv"]}
    assert words >= PROTOCOL_COMMANDS
    results = {v["fields"].get("cmd") for v in VECTORS["lines"] if v["keyword"] == "HIL_RESULT"}
    assert results >= PROTOCOL_COMMANDS
