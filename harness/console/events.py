"""Records -> typed events: boots, resets, crashes, link changes and HIL_* lines of an ESP-IDF console.

Usage::

    parser = LogParser()
    for chunk in chunks:
        for event in parser.feed(chunk):
            ...
    events = parser.finish()          # flushes a dump cut short by the end of the log

or ``parse_bytes(data)`` for a whole log. Every ESP-IDF log line also yields a ``log`` event; lines
with a meaning of their own (a got-IP line, a task watchdog report, a HIL_STATS line) yield their
typed event before it. Multi-line output (register dumps, backtraces, stack memory, the app
information block, a core dump) is gathered into the event whose header started it; events are
returned in log order once the block they belong to is complete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from harness.console.parse import Record, RecordReader
from harness.console.protocol import parse_machine_line

HEX = r"0x[0-9a-fA-F]{1,16}"

# One search per line finds every single-line marker and every multi-line header; anything not
# matched here (and not a log line) costs nothing more.
_MARKER = re.compile(
    r"(?P<guru>Guru Meditation Error)"
    r"|(?P<abort>abort\(\) was called at PC)"
    r"|(?P<errcheck>ESP_ERROR_CHECK failed:)"
    r"|(?P<assert>assert failed:|assertion \")"
    r"|(?P<stack>\*\*\*ERROR\*\*\* A stack overflow)"
    r"|(?P<heap>CORRUPT HEAP:)"
    r"|(?P<brownout>Brownout detector)"
    r"|(?P<rust>panicked at |panic occurr?ed in ')"
    r"|(?P<reboot>Rebooting\.\.\.)"
    r"|(?P<rom>ESP-ROM:|^ets [A-Z][a-z]{2} )"
    r"|(?P<rst>rst:0x)"
    r"|(?P<coredump>CORE DUMP START|Save core dump to flash|core dump to UART|Print core dump to uart)"
    r"|(?P<hwwdt>CPU has been reset by WDT)"
)

_GURU = re.compile(r"Guru Meditation Error:?\s*Core\s+(\d{1,2}) panic'ed \((.*)\)")
_GURU_OLD = re.compile(r"Guru Meditation Error of type (\w+) occurred on core\s+(\d{1,2})")
_ABORT = re.compile(rf"abort\(\) was called at PC ({HEX}) on core (\d{{1,2}})")
_ERRCHECK = re.compile(
    rf"ESP_ERROR_CHECK failed: esp_err_t (0x[0-9a-fA-F]{{1,8}}|-?\d{{1,10}})(?: \(([^)]*)\))?(?: at ({HEX}))?"
)
_ERRCHECK_FILE = re.compile(r'^file: "(.*)" line (\d{1,9})')
_ASSERT = re.compile(r"assert failed: (\S+) (\S+?):(\d{1,9}) \((.*)\)\s*$")
_ASSERT_NEWLIB = re.compile(r'assertion "(.*)" failed: file "(.*)", line (\d{1,9})(?:, function: (.*))?')
_STACK = re.compile(r"A stack overflow in task (.*?) has been detected")
_HEAP_ADDRESS = re.compile(rf"CORRUPT HEAP:.*?({HEX})")
_RUST_NEW = re.compile(r"panicked at (\S+?:\d{1,9}:\d{1,9}):?\s*(.*)$")
_RUST_OLD = re.compile(r"panicked at '(.*)', (\S+?:\d{1,9}:\d{1,9})")
_RUST_ESP_BACKTRACE = re.compile(r"panic occurr?ed in '([^']*)', at line (\d{1,9}), column (\d{1,9}):?\s*(.*)$")
_ROM = re.compile(r"ESP-ROM:(\S+)")
_RST = re.compile(r"rst:0x([0-9a-fA-F]{1,8})\s*(?:\(([^)]*)\))?(?:,\s*boot:0x([0-9a-fA-F]{1,8}))?")
_SAVED_PC = re.compile(rf"Saved PC:\s*({HEX})")

_REGISTER = re.compile(rf"([A-Z][A-Z0-9]*(?:/[A-Z0-9]+)?)\s*:\s*({HEX})")
_REGISTER_LINE = re.compile(rf"\s*[A-Z][A-Z0-9]*(?:/[A-Z0-9]+)?\s*:\s*{HEX}")
_MEMORY_LINE = re.compile(r"[0-9a-fA-F]{8}: 0x")
_BACKTRACE_PAIR = re.compile(rf"({HEX}):{HEX}")
_DECODED = re.compile(rf"(?:--- )?({HEX}): (.+?) at (.+?):(\d{{1,9}}|\?+)\s*$")
_GDB_FRAME = re.compile(rf"#\d{{1,4}}\s+({HEX}) in (\S+)(?:.* at (.+?):(\d{{1,9}}))?")
_ELF_SHA = re.compile(r"ELF file SHA256:\s*([0-9a-fA-F]+)")
_TASK_DETECTED = re.compile(r'Detected in task "([^"]*)"')
_CANARY = re.compile(r"Stack canary watchpoint triggered \((.*)\)")
_CORE_RUNNING = re.compile(r"^CPU (\d{1,2}): (.*)$")
_WDT_TASK = re.compile(r"^ - (.*?)(?: \(CPU [\d/ ]+\))?$")
_CONTINUATION_PREFIXES = (
    "Core ",
    "Stack memory",
    "Backtrace",
    "ELF file SHA256",
    "--- ",
    "Debug exception reason",
    "Detected in task",
    "Stack pointer",
    "Stack bounds",
    "Please enable",
    "Setting breakpoint",
    "CPU halted",
    "Exception was unhandled",
    "Memory dump",
    "Entering gdb stub",
    "Re-entered core dump",
    "|<-CORRUPTED",
)
_GDB_LINE = re.compile(r"#\d|\d+\t|0x[0-9a-fA-F]+ in ")

_APP_KEYS = {
    "Project name": "project",
    "App version": "version",
    "Compile time": "compile_time",
    "ELF file SHA256": "elf_sha256",
    "ESP-IDF": "idf_version",
    "Chip rev": "chip_revision",
    "Min chip rev": "min_chip_revision",
    "Max chip rev": "max_chip_revision",
    "Secure version": "secure_version",
}
_APP_LINE = re.compile(
    r"(Application information|Project name|App version|Compile time|ELF file SHA256|ESP-IDF|"
    r"Min chip rev|Max chip rev|Chip rev|Secure version):\s*(.*)$"
)
_BOOTLOADER_CHIP_REV = re.compile(r"^chip revision: (\S+)")
_GOT_IP = re.compile(
    r"\b(\w+) ip: (\d{1,3}(?:\.\d{1,3}){3})(?:, mask: (\d{1,3}(?:\.\d{1,3}){3}))?"
    r"(?:, gw: (\d{1,3}(?:\.\d{1,3}){3}))?"
)
_LINK = re.compile(r"\b[Ll]ink (?:is )?([Uu]p|[Dd]own|UP|DOWN)\b")
_BASE64_LINE = re.compile(r"[A-Za-z0-9+/=]{8,}")
# A UART core dump is kept for decoding up to this many base64 characters (ESP-IDF's default partition: 64 KiB).
MAX_COREDUMP_BASE64 = 4 << 20

# Kinds that mean the firmware crashed or was reset by a watchdog/brownout.
CRASH_EVENT_KINDS = ("panic", "abort", "assert", "wdt", "stack_overflow", "heap_corrupt", "brownout", "rust_panic")


@dataclass(slots=True)
class Event:
    """One typed event of the console.

    Attributes:
        kind: the event kind (``panic``, ``reset``, ``log``... see docs/console.md).
        lineno: 1-based line of the log where the event starts.
        fields: the kind's fields (names are a contract, see docs/console.md).
        end_lineno: last line that belongs to the event (not part of ``to_dict``).
    """

    kind: str
    lineno: int
    fields: dict[str, Any] = field(default_factory=dict)
    end_lineno: int = 0
    payload: bytes | None = None  # a core dump's base64 body (not part of ``to_dict``: it can be large)
    coredump: Event | None = None  # a crash: the core dump that followed it (linked by console.verdict.judge)

    def to_dict(self) -> dict[str, Any]:
        """Flatten to ``{"kind", "lineno", **fields}`` (the JSON form of `hil log parse --json`)."""
        return {"kind": self.kind, "lineno": self.lineno, **self.fields}


class _Block:
    """A multi-line event being gathered; ``consume`` says whether a record belongs to it."""

    def __init__(self, event: Event) -> None:
        self.event = event
        event.end_lineno = event.lineno

    def consume(self, record: Record) -> bool:
        raise NotImplementedError

    def events(self) -> list[Event]:
        return [self.event]


class _CrashBlock(_Block):
    """A crash report: header line, then register dumps, stack memory, backtrace and ELF SHA256."""

    def __init__(self, event: Event, absorbs_abort: bool = False, task_wdt: bool = False) -> None:
        super().__init__(event)
        self.absorbs_abort = absorbs_abort
        self.task_wdt = task_wdt
        self.registers: dict[str, str] = {}
        self.stack_memory: list[str] = []
        self.dumps = 0
        self.extra: list[Event] = []
        self.rust_message_pending = False
        if event.kind == "panic":
            event.fields.setdefault("backtrace", [])

    def consume(self, record: Record) -> bool:
        text = record.text
        stripped = text.strip()
        fields = self.event.fields
        if self.task_wdt and record.tag == "task_wdt":
            self._task_wdt_line(record.msg or "")
            return True
        if record.level is not None:
            return False
        if self.rust_message_pending and stripped:
            if _MARKER.search(text):
                self.rust_message_pending = False
                return False
            fields["message"] = stripped
            self.rust_message_pending = False
            return True
        if self.absorbs_abort:
            abort = _ABORT.search(text)
            if abort:
                fields["pc"], fields["core"] = abort[1], int(abort[2])
                self.absorbs_abort = False
                return True
            if self._error_check_detail(stripped):
                return True
        if not stripped:
            return True
        if _REGISTER_LINE.match(text):
            if self.dumps <= 1:
                self.registers.update(_REGISTER.findall(text))
            return True
        if _MEMORY_LINE.match(stripped):
            if self.dumps <= 1:
                self.stack_memory.append(stripped)
            return True
        if _GDB_LINE.match(stripped):
            return True
        if stripped.startswith(_CONTINUATION_PREFIXES) or stripped.startswith("0x"):
            self._special_line(stripped)
            return True
        return False

    def _task_wdt_line(self, msg: str) -> None:
        fields = self.event.fields
        task = _WDT_TASK.match(msg)
        if task:
            fields["tasks"].append(task[1])
            return
        running = _CORE_RUNNING.match(msg)
        if running:
            fields.setdefault("running", []).append(running[2])

    def _error_check_detail(self, stripped: str) -> bool:
        fields = self.event.fields
        location = _ERRCHECK_FILE.match(stripped)
        if location:
            fields["file"], fields["line"] = location[1], int(location[2])
            return True
        for prefix, name in (("func: ", "function"), ("expression: ", "expression")):
            if stripped.startswith(prefix):
                fields[name] = stripped[len(prefix) :]
                return True
        return False

    def _special_line(self, stripped: str) -> None:
        fields = self.event.fields
        if stripped.startswith("Core ") and "register dump" in stripped:
            self.dumps += 1
        elif stripped.startswith("Backtrace"):
            if "backtrace" not in fields or not fields["backtrace"]:
                fields["backtrace"] = _BACKTRACE_PAIR.findall(stripped)
        elif stripped.startswith("ELF file SHA256"):
            sha = _ELF_SHA.match(stripped)
            if sha:
                fields["elf_sha256"] = sha[1].lower()
        elif stripped.startswith("Detected in task"):
            task = _TASK_DETECTED.search(stripped)
            self._stack_overflow(task[1] if task else None)
        elif stripped.startswith("Debug exception reason"):
            canary = _CANARY.search(stripped)
            if canary:
                self._stack_overflow(canary[1])
        else:
            decoded = _DECODED.match(stripped)
            if decoded:
                line = decoded[4]
                fields.setdefault("decoded", []).append(
                    {
                        "address": decoded[1],
                        "function": decoded[2],
                        "file": decoded[3],
                        "line": int(line) if line.isdigit() else None,
                    }
                )

    def _stack_overflow(self, task: str | None) -> None:
        if any(extra.kind == "stack_overflow" for extra in self.extra):
            return
        fields = {"task": task} if task else {}
        self.extra.append(Event("stack_overflow", self.event.lineno, fields))

    def events(self) -> list[Event]:
        fields = self.event.fields
        regs = self.registers
        pc = regs.get("MEPC") or regs.get("PC")
        if pc:
            fields.setdefault("pc", pc)
        for name, register in (("ra", "RA"), ("sp", "SP"), ("mcause", "MCAUSE"), ("mtval", "MTVAL")):
            if register in regs:
                fields.setdefault(name, regs[register])
        if "MEPC" not in regs:  # Xtensa: A0 holds the return address, A1 the stack pointer
            for name, register in (("ra", "A0"), ("sp", "A1"), ("exccause", "EXCCAUSE"), ("excvaddr", "EXCVADDR")):
                if register in regs:
                    fields.setdefault(name, regs[register])
        if regs:
            fields["registers"] = dict(regs)
        if self.stack_memory:
            fields["stack_memory"] = list(self.stack_memory)
        reason = str(fields.get("reason", ""))
        if self.event.kind == "panic":
            if reason.startswith("Interrupt wdt timeout"):
                wdt = {"type": "interrupt", "tasks": [], "core": fields.get("core")}
                self.extra.insert(0, Event("wdt", self.event.lineno, wdt))
            if reason.startswith("Stack protection fault"):
                self._stack_overflow(None)
        for extra in self.extra:
            extra.end_lineno = self.event.end_lineno
            for key in ("pc", "backtrace", "elf_sha256"):
                if key in fields:
                    extra.fields.setdefault(key, fields[key])
        return [self.event, *self.extra]


class _ResetBlock(_Block):
    """The ROM's reset line; RISC-V ROMs print `Saved PC:0x...` right after it."""

    def consume(self, record: Record) -> bool:
        saved = _SAVED_PC.search(record.text)
        if saved and "saved_pc" not in self.event.fields:
            self.event.fields["saved_pc"] = saved[1]
            return True
        return False


class _AppInfoBlock(_Block):
    """The `app_init: Project name: ...` block (`cpu_start` before ESP-IDF 5, `efuse_init` for revisions)."""

    def __init__(self, event: Event, bootloader_chip_revision: str | None) -> None:
        super().__init__(event)
        self.bootloader_chip_revision = bootloader_chip_revision

    def consume(self, record: Record) -> bool:
        if record.msg is None:
            return False
        match = _APP_LINE.match(record.msg)
        if not match:
            return False
        name = _APP_KEYS.get(match[1])
        if name and name not in self.event.fields:
            value = match[2].strip()
            if name == "elf_sha256":
                value = value.rstrip(".").lower()
            self.event.fields[name] = value
        return True

    def events(self) -> list[Event]:
        if "chip_revision" not in self.event.fields and self.bootloader_chip_revision:
            self.event.fields["chip_revision"] = self.bootloader_chip_revision
        return [self.event]


class _CoreDumpBlock(_Block):
    """A core dump written to flash or printed (base64) to the UART; the base64 body becomes the payload."""

    def __init__(self, event: Event) -> None:
        super().__init__(event)
        self.body: list[str] = []
        self.in_body = False

    def consume(self, record: Record) -> bool:
        if record.tag is not None:
            return record.tag.startswith("esp_core_dump")
        text = record.text.strip()
        if "CORE DUMP START" in text:
            self.in_body = True
            return True
        if "CORE DUMP END" in text:
            self.in_body = False
            return True
        if _BASE64_LINE.fullmatch(text):
            if self.in_body and sum(map(len, self.body)) < MAX_COREDUMP_BASE64:
                self.body.append(text)
            return True
        return not text or "CORE DUMP" in text or "Core Dump" in text

    def events(self) -> list[Event]:
        if self.body:
            self.event.payload = "\n".join(self.body).encode() + b"\n"
            self.event.fields["size"] = sum(map(len, self.body)) * 3 // 4
        return [self.event]


class LogParser:
    """Incremental ESP-IDF console parser: bytes in, typed events out. Never raises on any input.

    Args:
        log_events: also return a ``log`` event for every ESP-IDF log line (default). Without them
            (crash detection over long soaks) lines that cannot start or continue an event are
            skipped after a few substring tests, which is several times faster; every other event
            is the same.
    """

    def __init__(self, log_events: bool = True) -> None:
        self.log_events = log_events
        self._reader = RecordReader(None if log_events else _may_matter)
        self._block: _Block | None = None
        self._held: list[Event] = []
        self._last_boot_lineno = -10
        self._link_state: dict[str | None, str] = {}
        self._last_got_ip: tuple[str | None, str] | None = None
        self._bootloader_chip_revision: str | None = None
        self._hw_wdt_seen = False

    @property
    def truncated_lines(self) -> int:
        """Lines longer than ``parse.MAX_LINE_CHARS`` seen so far (each was cut there)."""
        return self._reader.truncated_lines

    def feed(self, data: bytes) -> list[Event]:
        """Parse the next chunk; return the events completed by it."""
        out: list[Event] = []
        for record in self._reader.feed(data):
            self._handle(record, out)
        return out

    def finish(self) -> list[Event]:
        """End of input: parse a last unterminated line and flush a block cut short."""
        out: list[Event] = []
        for record in self._reader.finish():
            self._handle(record, out)
        self._close_block(out)
        return out

    # -- dispatch ---------------------------------------------------------------------------------

    def _handle(self, record: Record, out: list[Event]) -> None:
        block = self._block
        if block is not None:
            if block.consume(record):
                block.event.end_lineno = record.lineno
                if record.level is not None and self.log_events:
                    self._held.append(_log_event(record))
                return
            self._close_block(out)
        self._process(record, out)

    def _close_block(self, out: list[Event]) -> None:
        if self._block is None:
            return
        out.extend(self._block.events())
        out.extend(self._held)
        self._held = []
        self._block = None
        self._reader.keep_all = False

    def _open(self, block: _Block, record: Record, out: list[Event]) -> None:
        self._block = block
        self._reader.keep_all = True
        if record.level is not None and self.log_events:
            self._held.append(_log_event(record))

    def _emit(self, out: list[Event], kind: str, record: Record, fields: dict[str, Any] | None = None) -> None:
        out.append(Event(kind, record.lineno, fields or {}, record.lineno))

    def _process(self, record: Record, out: list[Event]) -> None:
        marker = _MARKER.search(record.text) if _may_have_marker(record.text) else None
        if marker is not None and self._marker(marker.lastgroup or "", record, out):
            return
        if record.level is not None:
            self._log_line(record, out)

    # -- single-line markers and crash headers ----------------------------------------------------

    def _marker(self, name: str, record: Record, out: list[Event]) -> bool:
        """Handle a marker; return True when the record was fully handled (a block was opened)."""
        text = record.text
        if name == "guru":
            match = _GURU.search(text)
            if match:
                fields: dict[str, Any] = {"reason": match[2].strip(), "core": int(match[1])}
            else:
                old = _GURU_OLD.search(text)
                fields = {"reason": old[1], "core": int(old[2])} if old else {"reason": None}
            self._open(_CrashBlock(Event("panic", record.lineno, fields)), record, out)
            return True
        if name == "abort":
            match = _ABORT.search(text)
            fields = {"pc": match[1], "core": int(match[2])} if match else {}
            self._open(_CrashBlock(Event("abort", record.lineno, fields)), record, out)
            return True
        if name == "errcheck":
            self._open(_CrashBlock(Event("abort", record.lineno, _error_check(text)), absorbs_abort=True), record, out)
            return True
        if name == "assert":
            self._open(_CrashBlock(Event("assert", record.lineno, _assert(text))), record, out)
            return True
        if name == "stack":
            match = _STACK.search(text)
            fields = {"task": match[1]} if match else {}
            self._open(_CrashBlock(Event("stack_overflow", record.lineno, fields)), record, out)
            return True
        if name == "heap":
            match = _HEAP_ADDRESS.search(text)
            fields = {"address": match[1]} if match else {}
            fields["detail"] = text[text.find("CORRUPT HEAP:") + 13 :].strip()
            self._open(_CrashBlock(Event("heap_corrupt", record.lineno, fields)), record, out)
            return True
        if name == "rust":
            fields, pending = _rust_panic(text)
            block = _CrashBlock(Event("rust_panic", record.lineno, fields))
            block.rust_message_pending = pending
            self._open(block, record, out)
            return True
        if name == "coredump":
            where = "flash" if "flash" in text else "uart"
            block = _CoreDumpBlock(Event("coredump", record.lineno, {"where": where}))
            block.in_body = "CORE DUMP START" in text
            self._open(block, record, out)
            return True
        if name == "rst":
            self._reset(record, out)
            return True
        if name == "rom":
            self._boot(record, out)
            return False
        if name == "brownout":
            self._emit(out, "brownout", record)
        elif name == "reboot":
            self._emit(out, "reboot", record)
        elif name == "hwwdt" and not self._hw_wdt_seen:
            self._hw_wdt_seen = True
            self._emit(out, "wdt", record, {"type": "hw", "tasks": []})
        return False

    def _boot(self, record: Record, out: list[Event]) -> None:
        match = _ROM.search(record.text)
        rom = match[1] if match else record.text.strip()
        self._emit(out, "boot", record, {"rom": rom})
        self._new_boot(record.lineno)

    def _new_boot(self, lineno: int) -> None:
        self._last_boot_lineno = lineno
        self._link_state.clear()
        self._last_got_ip = None
        self._bootloader_chip_revision = None
        self._hw_wdt_seen = False

    def _reset(self, record: Record, out: list[Event]) -> None:
        match = _RST.search(record.text)
        if match is None:
            return
        if record.lineno - self._last_boot_lineno > 5:
            # The banner was not captured (port opened late): the reset still starts a boot.
            self._emit(out, "boot", record)
            self._new_boot(record.lineno)
        fields: dict[str, Any] = {"code": int(match[1], 16), "reason": match[2]}
        if match[3] is not None:
            fields["boot_mode"] = int(match[3], 16)
        self._open(_ResetBlock(Event("reset", record.lineno, fields)), record, out)

    # -- log lines --------------------------------------------------------------------------------

    def _log_line(self, record: Record, out: list[Event]) -> None:
        tag = record.tag or ""
        msg = record.msg or ""
        if tag == "hil":
            self._machine_line(record, out)
        elif tag == "task_wdt" and msg.startswith("Task watchdog got triggered"):
            block = _CrashBlock(Event("wdt", record.lineno, {"type": "task", "tasks": []}), task_wdt=True)
            self._open(block, record, out)
            return
        elif ":" in msg and _APP_LINE.match(msg):
            self._open(_AppInfoBlock(Event("app_info", record.lineno), self._bootloader_chip_revision), record, out)
            self._block.consume(record)  # type: ignore[union-attr]
            return
        elif " ip: " in msg:
            match = _GOT_IP.search(msg)
            if match:
                self._got_ip(record, out, match[1], match[2], match[3], match[4])
        elif "ink " in msg or tag == "wifi":
            self._link_line(record, out, tag, msg)
        elif tag.startswith("boot") and msg.startswith("chip revision"):
            match = _BOOTLOADER_CHIP_REV.match(msg)
            if match:
                self._bootloader_chip_revision = match[1]
        if self.log_events:
            out.append(_log_event(record))

    def _machine_line(self, record: Record, out: list[Event]) -> None:
        line = parse_machine_line(record.text)
        if line is None:
            return
        if line.keyword == "HIL_STATS":
            self._emit(out, "hil_stats", record, dict(line.fields))
        elif line.keyword == "HIL_EVENT":
            event = line.fields.get("event")
            iface = line.fields.get("iface")
            if event in ("link_up", "link_down"):
                self._link(record, out, event, iface if isinstance(iface, str) else None)
            elif event == "got_ip":
                self._got_ip(
                    record,
                    out,
                    iface,
                    line.fields.get("ip"),
                    line.fields.get("netmask"),
                    line.fields.get("gw"),
                    line.fields.get("lease_s"),
                )

    def _got_ip(
        self,
        record: Record,
        out: list[Event],
        iface: Any,
        ip: Any,
        netmask: Any,
        gw: Any,
        lease_s: Any = None,
    ) -> None:
        if not isinstance(ip, str):
            return
        key = (iface if isinstance(iface, str) else None, ip)
        if self._last_got_ip == key:
            return  # the same lease reported twice (esp_netif line and HIL_EVENT line)
        self._last_got_ip = key
        fields: dict[str, Any] = {"ip": ip}
        for name, value in (("netmask", netmask), ("gw", gw), ("iface", key[0]), ("lease_s", lease_s)):
            if value is not None:
                fields[name] = value
        self._emit(out, "got_ip", record, fields)

    def _link_line(self, record: Record, out: list[Event], tag: str, msg: str) -> None:
        if tag == "wifi":
            if msg.startswith("connected with"):
                self._link(record, out, "link_up", "sta")
            elif msg.startswith(("state: run -> init", "disconnected")):
                self._link(record, out, "link_down", "sta")
            return
        match = _LINK.search(msg)
        if match:
            iface = "eth" if ("eth" in tag.lower() or "eth" in msg.lower()) else None
            self._link(record, out, "link_up" if match[1].lower() == "up" else "link_down", iface)

    def _link(self, record: Record, out: list[Event], kind: str, iface: str | None) -> None:
        if self._link_state.get(iface) == kind:
            return  # one change reported by two lines (component log and HIL_EVENT)
        self._link_state[iface] = kind
        if kind == "link_down":
            self._last_got_ip = None
        self._emit(out, kind, record, {"iface": iface} if iface else {})


def _may_have_marker(text: str) -> bool:
    """Cheap prefilter for `_MARKER` (plain substring tests are ~20x faster than the alternation)."""
    return (
        "Guru" in text
        or "abort()" in text
        or "ESP_ERROR_CHECK" in text
        or "assert" in text
        or "***ERROR" in text
        or "CORRUPT HEAP" in text
        or "Brownout" in text
        or "panic" in text
        or "Rebooting" in text
        or "ESP-ROM:" in text
        or "rst:0x" in text
        or "ore dump" in text
        or "CORE DUMP" in text
        or "reset by WDT" in text
        or text.startswith("ets ")
    )


def _may_matter(text: str) -> bool:
    """Whether a line can start an event other than ``log`` (false positives are fine, misses are not)."""
    return (
        _may_have_marker(text)
        or "HIL_" in text
        or "task_wdt" in text
        or " ip: " in text
        or "ink " in text
        or "wifi:" in text
        or "chip rev" in text
        or "Project name" in text
        or "App version" in text
        or "Compile time" in text
        or "ELF file" in text
        or "ESP-IDF:" in text
        or "Chip rev" in text
        or "Secure version" in text
        or "Application information" in text
    )


def _log_event(record: Record) -> Event:
    return Event(
        "log",
        record.lineno,
        {"level": record.level, "ms": record.ms, "tag": record.tag, "msg": record.msg},
        record.lineno,
    )


def _error_check(text: str) -> dict[str, Any]:
    match = _ERRCHECK.search(text)
    if not match:
        return {}
    raw = match[1]
    fields: dict[str, Any] = {"error_code": int(raw, 16) if raw.startswith("0x") else int(raw)}
    if match[2]:
        fields["error"] = match[2]
    if match[3]:
        fields["pc"] = match[3]
    return fields


def _assert(text: str) -> dict[str, Any]:
    match = _ASSERT.search(text)
    if match:
        return {"function": match[1], "file": match[2], "line": int(match[3]), "expression": match[4]}
    newlib = _ASSERT_NEWLIB.search(text)
    if newlib:
        fields: dict[str, Any] = {"expression": newlib[1], "file": newlib[2], "line": int(newlib[3])}
        if newlib[4]:
            fields["function"] = newlib[4].strip()
        return fields
    rest = text[text.find("assert failed:") + 14 :].strip()
    return {"expression": rest} if rest else {}


def _rust_panic(text: str) -> tuple[dict[str, Any], bool]:
    """Fields of a Rust panic line and whether the message follows on the next line (Rust >= 1.73)."""
    old = _RUST_OLD.search(text)
    if old:
        return {"location": old[2], "message": old[1]}, False
    espbt = _RUST_ESP_BACKTRACE.search(text)
    if espbt:
        fields: dict[str, Any] = {"location": f"{espbt[1]}:{espbt[2]}:{espbt[3]}"}
        if espbt[4]:
            fields["message"] = espbt[4]
        return fields, not espbt[4]
    new = _RUST_NEW.search(text)
    if new:
        if new[2]:
            return {"location": new[1], "message": new[2]}, False
        return {"location": new[1]}, True
    return {}, False


def parse_bytes(data: bytes, log_events: bool = True) -> list[Event]:
    """Parse a whole log at once (see `LogParser` for ``log_events``)."""
    parser = LogParser(log_events)
    return parser.feed(data) + parser.finish()
