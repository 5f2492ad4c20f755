"""Fixtures for the firmware tests: a throw-away copy of the firmware tree to break on purpose."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SERVICES_HEADER = REPO / "firmware" / "services" / "include" / "hil_services.h"


@pytest.fixture
def firmware_copy(tmp_path: Path) -> Path:
    """A repository-shaped copy of firmware/ (hil_app, certs, PROTOCOL.md, services if present)."""
    (tmp_path / "firmware").mkdir()
    for name in ("hil_app", "certs", "services"):
        source = REPO / "firmware" / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / "firmware" / name, ignore=shutil.ignore_patterns("build*"))
    shutil.copy(REPO / "firmware" / "PROTOCOL.md", tmp_path / "firmware" / "PROTOCOL.md")
    return tmp_path
