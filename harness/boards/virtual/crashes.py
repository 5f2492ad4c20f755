"""What an ESP32-P4 running ESP-IDF prints when it crashes, for the virtual board's `crash <kind>` command.

The shapes follow ESP-IDF's RISC-V panic handler (v5.x): the cause line, ``Core  0 register dump:`` with
MEPC/RA/SP/.../MHARTID in four columns, ``Stack memory:``, ``ELF file SHA256:`` and ``Rebooting...``.
Addresses are plausible ESP32-P4 ones: code in flash (0x4000_0000 + offset) or HP L2MEM
(0x4ff0_0000...), stacks and globals in HP L2MEM. After the reboot the ROM banner shows the reset
reason given by `reset_reason_for` (the panic handler restarts with a software CPU reset).
"""

from __future__ import annotations

import hashlib

from harness.errors import ConfigError

CRASH_KINDS = ("panic", "abort", "assert", "wdt", "stack_overflow", "rust_panic")

_RESET_REASONS = {
    **dict.fromkeys(CRASH_KINDS, (0xC, "SW_CPU_RESET")),
    # A hang with interrupts off: the main system watchdog (MWDT0) resets the HP system.
    "hw_wdt": (0x7, "HP_SYS_HP_WDT_RESET"),
}
_REGISTER_NAMES = (
    "MEPC", "RA", "SP", "GP",
    "TP", "T0", "T1", "T2",
    "S0/FP", "S1", "A0", "A1",
    "A2", "A3", "A4", "A5",
    "A6", "A7", "S2", "S3",
    "S4", "S5", "S6", "S7",
    "S8", "S9", "S10", "S11",
    "T3", "T4", "T5", "T6",
    "MSTATUS", "MTVEC", "MCAUSE", "MTVAL",
    "MHARTID",
)  # fmt: skip
_STACK_WORDS_PER_LINE = 8
_STACK_LINES = 8


def _check_kind(kind: str, allowed: tuple[str, ...] | dict) -> None:
    if kind not in allowed:
        raise ConfigError(f"unknown crash kind {kind!r}; use one of: {', '.join(allowed)}")


class _Addresses:
    """Deterministic, P4-looking addresses derived from the crash kind (same kind -> same output)."""

    def __init__(self, kind: str) -> None:
        self._seed = hashlib.sha256(kind.encode()).digest()
        self._counter = 0

    def _word(self) -> int:
        self._counter += 1
        digest = hashlib.sha256(self._seed + self._counter.to_bytes(4, "little")).digest()
        return int.from_bytes(digest[:4], "little")

    def code(self) -> int:
        """An instruction address in flash-mapped code (halfword aligned, RV32C)."""
        return 0x40000000 + (self._word() % 0x00080000) & ~1

    def iram(self) -> int:
        """An instruction address in HP L2MEM (IRAM code such as the panic handler)."""
        return 0x4FF00000 + (self._word() % 0x00010000) & ~1

    def stack(self) -> int:
        """A word-aligned stack address in HP L2MEM."""
        return 0x4FF30000 + (self._word() % 0x00010000) & ~0xF


def _register_dump(regs: dict[str, int], core: int) -> list[str]:
    lines = [f"Core  {core} register dump:"]
    row: list[str] = []
    for name in _REGISTER_NAMES:
        row.append(f"{name:<8}: 0x{regs.get(name, 0):08x}  ")
        if len(row) == 4:
            lines.append("".join(row))
            row = []
    if row:
        lines.append("".join(row))
    return lines


def _stack_memory(sp: int, addresses: _Addresses) -> list[str]:
    lines = ["Stack memory:"]
    for line in range(_STACK_LINES):
        base = sp + line * 4 * _STACK_WORDS_PER_LINE
        words = []
        for index in range(_STACK_WORDS_PER_LINE):
            # Saved return addresses sit among zeros and stack pointers, as in a real frame.
            choice = (line * _STACK_WORDS_PER_LINE + index) % 5
            word = addresses.code() if choice == 3 else (addresses.stack() if choice == 1 else 0)
            words.append(f"0x{word:08x}")
        lines.append(f"{base:08x}: " + " ".join(words))
    return lines


def _dump_tail(addresses: _Addresses, *, pc: int, mcause: int, mtval: int, core: int, elf_sha256: str) -> list[str]:
    sp = addresses.stack()
    regs = {
        "MEPC": pc,
        "RA": addresses.code(),
        "SP": sp,
        "GP": 0x4FF16B00,
        "TP": sp + 0x1D0,
        "T0": addresses.iram(),
        "A0": 1,
        "A1": sp + 0x10,
        "MSTATUS": 0x00001881,
        "MTVEC": 0x4FF00003,
        "MCAUSE": mcause,
        "MTVAL": mtval,
        "MHARTID": core,
    }
    return [
        *_register_dump(regs, core),
        "",
        "",
        *_stack_memory(sp, addresses),
        "",
        "",
        "",
        f"ELF file SHA256: {elf_sha256[:16]}",
        "",
        "Rebooting...",
    ]


def _abort_lines(addresses: _Addresses, core: int, elf_sha256: str) -> list[str]:
    abort_pc = addresses.iram()
    return [
        "",
        f"abort() was called at PC 0x{abort_pc:08x} on core {core}",
        # abort() ends in an ebreak: the dump shows the breakpoint exception inside abort().
        *_dump_tail(addresses, pc=addresses.iram(), mcause=0x3, mtval=0, core=core, elf_sha256=elf_sha256),
    ]


def crash_lines(kind: str, *, ms: int, elf_sha256: str, core: int = 0, task: str = "main") -> list[str]:
    """Console lines (without line endings) an ESP32-P4 prints for a crash of the given kind.

    Args:
        kind: one of ``panic`` (Load access fault on a NULL pointer), ``abort``, ``assert``, ``wdt``
            (task watchdog with panic enabled), ``stack_overflow`` (FreeRTOS canary check) and
            ``rust_panic`` (a Rust panic in the glue, which calls abort()).
        ms: milliseconds since boot, for the ESP-IDF log lines of the report.
        elf_sha256: SHA256 (hex) of the running firmware ELF; the first 16 digits are printed.
        core: the CPU that crashed (0 or 1).
        task: the FreeRTOS task that was running.

    Raises:
        ConfigError: ``kind`` is not one of the kinds above.
    """
    _check_kind(kind, CRASH_KINDS)
    addresses = _Addresses(kind)
    if kind == "panic":
        return [
            f"Guru Meditation Error: Core  {core} panic'ed (Load access fault). Exception was unhandled.",
            "",
            *_dump_tail(addresses, pc=addresses.code(), mcause=0x5, mtval=0, core=core, elf_sha256=elf_sha256),
        ]
    if kind == "abort":
        return _abort_lines(addresses, core, elf_sha256)[1:]
    if kind == "assert":
        return [
            f"assert failed: {task}_loop crash.c:42 (pointer != NULL)",
            "",
            *_dump_tail(addresses, pc=addresses.iram(), mcause=0x3, mtval=0, core=core, elf_sha256=elf_sha256),
        ]
    if kind == "wdt":
        other = 1 - core if core in (0, 1) else 0
        running = {core: task, other: f"IDLE{other}"}
        return [
            f"E ({ms}) task_wdt: Task watchdog got triggered. The following tasks/users did not reset "
            "the watchdog in time:",
            f"E ({ms}) task_wdt:  - IDLE{core} (CPU {core})",
            f"E ({ms}) task_wdt: Tasks currently running:",
            f"E ({ms}) task_wdt: CPU 0: {running[0]}",
            f"E ({ms}) task_wdt: CPU 1: {running[1]}",
            f"E ({ms}) task_wdt: Aborting.",
            *_abort_lines(addresses, core, elf_sha256),
        ]
    if kind == "stack_overflow":
        return [
            "",
            f"***ERROR*** A stack overflow in task {task} has been detected.",
            *_dump_tail(addresses, pc=addresses.iram(), mcause=0x3, mtval=0, core=core, elf_sha256=elf_sha256),
        ]
    # rust_panic: core::panicking -> the glue's panic handler prints the location and message, then abort().
    return [
        "panicked at src/iface.rs:412:21:",
        "called `Option::unwrap()` on a `None` value",
        *_abort_lines(addresses, core, elf_sha256),
    ]


def reset_reason_for(kind: str) -> tuple[int, str]:
    """The reset reason the ESP32-P4 ROM banner shows after a crash of this kind: ``(code, name)``.

    The panic handler ends with a software CPU reset (``rst:0xc (SW_CPU_RESET)``); only a hang that
    the hardware watchdog catches (``hw_wdt``) shows ``rst:0x7 (HP_SYS_HP_WDT_RESET)``.

    Raises:
        ConfigError: ``kind`` is unknown.
    """
    _check_kind(kind, _RESET_REASONS)
    return _RESET_REASONS[kind]
