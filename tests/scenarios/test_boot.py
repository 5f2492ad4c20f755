"""Boot: reset the board, read the boot log, time how long until link and address."""

from __future__ import annotations

import re

from harness.boards.board import Board

APP_INFO = {
    "project": re.compile(r"app_init: Project name:\s+(\S+)"),
    "version": re.compile(r"app_init: App version:\s+(\S+)"),
    "idf_version": re.compile(r"app_init: ESP-IDF:\s+(\S+)"),
    "elf_sha256": re.compile(r"app_init: ELF file SHA256:\s+([0-9a-f]+)"),
}


def test_boot(board: Board, metrics) -> None:
    """An EN reset gives a power-on boot whose app info matches what HIL_HELLO reports."""
    boot = board.reset(wait_online=True)

    assert boot.reset_reason == "POWERON", f"EN reset reported as {boot.reset_reason} (rst:0x{boot.reset_code:x})"
    log = [line.text for line in board.monitor.slice(boot.mark)]
    app_info = {}
    for field, pattern in APP_INFO.items():
        found = next((m.group(1) for line in log if (m := pattern.search(line))), None)
        assert found is not None, f"boot log has no app_init `{field}` line"
        app_info[field] = found
    assert app_info["project"] == boot.hello["app"]
    assert app_info["version"] == boot.hello["app_version"]
    assert boot.hello["elf_sha256"].startswith(app_info["elf_sha256"]), "ELF SHA256 in boot log and HIL_HELLO differ"
    assert boot.hello["chip"] == "esp32p4"

    assert boot.t_link is not None and boot.t_ip is not None
    metrics.record("boot_to_link_s", boot.t_link - boot.t_reset, "s", "lower")
    metrics.record("boot_to_ip_s", boot.t_ip - boot.t_reset, "s", "lower")
