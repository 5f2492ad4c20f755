"""One-paragraph human summaries of crash events, used as the failure message of a test."""

from __future__ import annotations

from typing import Any

from harness.console.events import Event

# Event kinds that fail a test unless it declares it expects them. A `reset` counts only when the
# harness did not ask for it (the monitor decides that; a planned reboot is not a crash).
CRASH_KINDS: frozenset[str] = frozenset(
    {"panic", "abort", "assert", "wdt", "stack_overflow", "heap_corrupt", "brownout", "rust_panic", "reset"}
)

_TITLES = {
    "panic": "CPU exception (panic)",
    "abort": "abort()",
    "assert": "assertion failed",
    "wdt": "watchdog timeout",
    "stack_overflow": "stack overflow",
    "heap_corrupt": "heap corruption",
    "brownout": "brownout (supply voltage dropped)",
    "rust_panic": "Rust panic",
    "reset": "unexpected reset",
}
MAX_FRAMES = 8


def _frames(fields: dict[str, Any]) -> str:
    decoded = fields.get("decoded") or []
    if decoded:
        parts = []
        for frame in decoded[:MAX_FRAMES]:
            where = f"{frame.get('file')}:{frame.get('line')}" if frame.get("line") else str(frame.get("file"))
            parts.append(f"{frame.get('address')} {frame.get('function')} ({where})")
        return "; ".join(parts)
    backtrace = fields.get("backtrace") or []
    more = f" (+{len(backtrace) - MAX_FRAMES} more)" if len(backtrace) > MAX_FRAMES else ""
    return " ".join(str(address) for address in backtrace[:MAX_FRAMES]) + more


def crash_summary(event: Event) -> str:
    """Describe a crash event in one paragraph: kind, reason, PC, task and backtrace.

    Args:
        event: a crash event (any kind works; the text says what the event carries).

    Returns:
        A single line of text such as ``panic: Illegal instruction on core 0 at PC 0x4ff0a3b6 ...``.
    """
    fields = event.fields
    parts = [f"{_TITLES.get(event.kind, event.kind)} at console line {event.lineno}"]
    if event.kind == "wdt":
        parts.append(f"{fields.get('type', '?')} watchdog")
        if fields.get("tasks"):
            parts.append("tasks not feeding it: " + ", ".join(map(str, fields["tasks"])))
        if fields.get("running"):
            parts.append("running: " + ", ".join(map(str, fields["running"])))
    if fields.get("reason"):
        parts.append(f"reason: {fields['reason']}")
    if event.kind == "reset":
        parts.append(f"rst:0x{int(fields.get('code', 0)):x}")
    if fields.get("error"):
        parts.append(f"{fields['error']} (0x{int(fields.get('error_code', 0)):x})")
    if fields.get("expression"):
        parts.append(f"expression: {fields['expression']}")
    if fields.get("function") or fields.get("file"):
        parts.append(f"in {fields.get('function', '?')} at {fields.get('file', '?')}:{fields.get('line', '?')}")
    if fields.get("message"):
        parts.append(f"message: {fields['message']}")
    if fields.get("location"):
        parts.append(f"at {fields['location']}")
    if fields.get("task"):
        parts.append(f"task: {fields['task']}")
    if fields.get("address"):
        parts.append(f"address: {fields['address']}")
    if fields.get("pc"):
        core = f" on core {fields['core']}" if fields.get("core") is not None else ""
        extra = ", ".join(f"{name.upper()} {fields[name]}" for name in ("ra", "mtval") if fields.get(name))
        parts.append(f"PC {fields['pc']}{core}" + (f" ({extra})" if extra else ""))
    frames = _frames(fields)
    if frames:
        parts.append(f"backtrace: {frames}")
    if fields.get("elf_sha256"):
        parts.append(f"ELF SHA256 {fields['elf_sha256']}")
    return "; ".join(parts) + "."
