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


def test_boot_memory_budget(board: Board, hil_config, metrics) -> None:
    """Right after boot the build leaves the socket handles, descriptors and internal RAM hil.toml asks for.

    Also records the image's static footprint (the stack's archives and the whole image) when the board knows it.
    """
    budget = hil_config.memory
    board.reset(wait_online=True)
    sockets = board.command("sockets")
    heap = board.command("heap")
    assert sockets.get("ok") and heap.get("ok"), f"`sockets` or `heap` failed: {sockets}, {heap}"
    free_handles = int(sockets["sockets_max"]) - int(sockets["active_sockets"])
    free_fds = int(sockets["fds_max"]) - int(sockets["fds_used"])
    internal = heap["caps"]["internal"]
    metrics.record("boot_free_socket_handles", free_handles, "sockets", "higher")
    metrics.record("boot_free_fds", free_fds, "fds", "higher")
    metrics.record("boot_internal_heap_free_bytes", internal["free"], "B", "higher")
    metrics.record("boot_heap_free_bytes", heap["free"], "B", "higher")
    metrics.record("boot_heap_min_free_bytes", heap["min_free"], "B", "higher")
    footprint = board.firmware_footprint()
    if footprint is not None:  # the static side of the same budget: what the image pre-pays, per stack
        for name, value in footprint.metrics().items():
            metrics.record(f"footprint_{name}_bytes", value, "B", "lower")
    over = []
    if free_handles < budget.free_socket_handles_min:
        over.append(
            f"{sockets['active_sockets']} of {sockets['sockets_max']} socket handles in use at idle, "
            f"{free_handles} free (memory.free_socket_handles_min {budget.free_socket_handles_min})"
        )
    if free_fds < budget.free_fds_min:
        over.append(
            f"{sockets['fds_used']} of {sockets['fds_max']} descriptors in use at idle, {free_fds} free "
            f"(memory.free_fds_min {budget.free_fds_min})"
        )
    if internal["free"] < budget.internal_heap_free_min_bytes:
        over.append(
            f"{internal['free']} B of internal RAM free after bring-up (largest block {internal['largest_block']} B; "
            f"memory.internal_heap_free_min_bytes {budget.internal_heap_free_min_bytes})"
        )
    assert not over, "the build over-commits the board: " + "; ".join(over)
