"""`hil build` without ESP-IDF says what is missing; staleness decides when to rebuild."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import HilError, MissingToolError
from harness.firmware.build import (
    APP_DIR,
    build_command,
    idf_version,
    is_stale,
    require_idf,
    source_files,
    variant_build_dir,
    variant_defaults,
)
from harness.firmware.cli import chip_rev_to_build


def test_without_idf_names_every_missing_piece(tmp_path: Path) -> None:
    with pytest.raises(MissingToolError) as info:
        require_idf({"PATH": str(tmp_path), "HOME": str(tmp_path)})
    message = str(info.value)
    assert "IDF_PATH is not set" in message
    assert "idf.py is not on PATH" in message
    assert "rustup is not installed" in message
    assert "export.sh" in message


def test_idf_path_without_idf_py_is_named(tmp_path: Path) -> None:
    with pytest.raises(MissingToolError, match=r"IDF_PATH=.* has no tools/idf.py"):
        require_idf({"IDF_PATH": str(tmp_path), "PATH": str(tmp_path), "HOME": str(tmp_path)})


def test_cli_build_without_idf_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("IDF_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["build"]) == 2
    assert "cannot build firmware/hil_app: IDF_PATH is not set" in capsys.readouterr().err


def test_stale_until_image_is_newer_than_every_source(tmp_path: Path) -> None:
    app = tmp_path / "hil_app"
    (app / "main").mkdir(parents=True)
    source = app / "main" / "hil_main.c"
    source.write_text("int x;\n")
    build_dir = app / "build"
    sources = source_files(app, extra_dirs=[])
    assert is_stale(build_dir, sources)  # never built
    build_dir.mkdir()
    image = build_dir / "hil_app.bin"
    image.write_bytes(b"\0")
    now = time.time()
    os.utime(source, (now - 10, now - 10))
    os.utime(image, (now, now))
    assert not is_stale(build_dir, sources)
    os.utime(source, (now + 10, now + 10))  # edited after the build
    assert is_stale(build_dir, sources)


def test_generated_files_are_not_sources(tmp_path: Path) -> None:
    app = tmp_path / "hil_app"
    for name in ("main/hil_main.c", "build/x.o", "managed_components/c/y.c", "sdkconfig", "dependencies.lock"):
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text("")
    assert [p.relative_to(app).as_posix() for p in source_files(app, extra_dirs=[])] == ["main/hil_main.c"]


def test_repo_sources_include_services_and_certs() -> None:
    names = {p.relative_to(APP_DIR.parent).parts[0] for p in source_files()}
    assert {"hil_app", "certs"} <= names


def test_build_command_keeps_sdkconfig_in_build_dir(tmp_path: Path) -> None:
    command = build_command("idf.py", APP_DIR, tmp_path, ["sdkconfig.defaults", "sdkconfig.defaults.rev_lt_v3"])
    assert command[-1] == "build"
    assert "IDF_TARGET=esp32p4" in command
    assert f"SDKCONFIG={tmp_path / 'sdkconfig'}" in command
    assert "SDKCONFIG_DEFAULTS=sdkconfig.defaults;sdkconfig.defaults.rev_lt_v3" in command


@pytest.mark.parametrize(
    ("version", "chip_rev", "stack", "expected"),
    [
        ((6, 0), "v1.0", "smoltcp", ["sdkconfig.defaults", "sdkconfig.defaults.rev_lt_v3"]),
        ((6, 0), "v3.1", "smoltcp", ["sdkconfig.defaults"]),
        (
            (5, 5),
            "v1.0",
            "smoltcp",
            ["sdkconfig.defaults", "sdkconfig.defaults.rev_lt_v3", "sdkconfig.defaults.smoltcp_v0_1"],
        ),
        ((5, 5), "v3.0", "lwip", ["sdkconfig.defaults", "sdkconfig.defaults.lwip"]),
        ((6, 1), "1.3", "lwip", ["sdkconfig.defaults", "sdkconfig.defaults.rev_lt_v3", "sdkconfig.defaults.lwip"]),
    ],
)
def test_variant_follows_idf_version_chip_rev_and_stack(version, chip_rev, stack, expected) -> None:
    assert variant_defaults(version, chip_rev, stack) == expected
    for name in expected:
        assert (APP_DIR / name).is_file(), f"{name} is not in firmware/hil_app"


def test_unsupported_idf_and_bad_revision_are_refused() -> None:
    with pytest.raises(HilError, match=r"needs v5\.5 or v6\.0"):
        variant_defaults((5, 4), "v1.0")
    with pytest.raises(HilError, match="not of the form"):
        variant_defaults((6, 0), "rev1")


def test_idf_version_is_read_from_the_checkout(tmp_path: Path) -> None:
    (tmp_path / "tools" / "cmake").mkdir(parents=True)
    (tmp_path / "tools" / "cmake" / "version.cmake").write_text(
        "set(IDF_VERSION_MAJOR 6)\nset(IDF_VERSION_MINOR 0)\nset(IDF_VERSION_PATCH 2)\n"
    )
    assert idf_version(tmp_path) == (6, 0)
    assert variant_build_dir(APP_DIR, (6, 0), "v1.0", "lwip").name == "build-idf6.0-rev_lt_v3-lwip"
    with pytest.raises(MissingToolError, match="cannot read the ESP-IDF version"):
        idf_version(tmp_path / "nowhere")


def test_the_chip_revision_comes_from_the_option_then_the_board_s_table(tmp_path: Path) -> None:
    config = tmp_path / "hil.toml"
    config.write_text('[boards.desk]\nchip_rev = "v1.0"\n')
    assert chip_rev_to_build(None, config, None) == "v1.0"
    assert chip_rev_to_build("v3.1", config, None) == "v3.1"
    (tmp_path / "boardless.toml").write_text("")
    assert chip_rev_to_build(None, tmp_path / "boardless.toml", None) is None
