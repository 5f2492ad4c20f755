"""`hil log parse FILE [--json]`: the typed events of a console log."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from harness.console.decode import BacktraceDecoder, read_coredump_partition
from harness.console.events import CRASH_EVENT_KINDS, Event, LogParser
from harness.console.parse import MAX_LINE_CHARS
from harness.console.sanitize import sanitize, sanitize_line
from harness.console.verdict import decode_crashes
from harness.errors import ConfigError

CHUNK_BYTES = 1 << 20


HOST_TIME_PREFIX = re.compile(rb"^\d{9,11}\.\d{6} ")
HOST_TIME_PREFIX_MAX = 19


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hil log parse` to the `hil` command."""
    log_parser = subparsers.add_parser("log", help="work with console logs", description="Work with console logs.")
    log_commands = log_parser.add_subparsers(dest="log_command", metavar="COMMAND")
    parse = log_commands.add_parser(
        "parse",
        help="list the events (boots, resets, crashes, link changes, HIL lines) of a console log",
        description="Parse an ESP-IDF console log into typed events. Exit status 0 whatever the log contains.",
    )
    parse.add_argument("file", metavar="FILE", help="console log file, or - for standard input")
    parse.add_argument("--json", action="store_true", help="one JSON object per event per line")
    parse.add_argument("--no-log", action="store_true", help="leave out plain `log` events (table and JSON)")
    parse.add_argument(
        "--elf",
        metavar="ELF",
        help="the app ELF the device ran: decode crash backtraces and UART core dumps (`decoded`, `decoded_by`)",
    )
    parse.set_defaults(func=run_parse)
    coredump = log_commands.add_parser(
        "coredump",
        help="decode a core dump (a saved UART base64 dump, a raw partition file, or read from the board's flash)",
        description="Decode an ESP-IDF core dump with esp-coredump: the crashed task's backtrace.",
    )
    source = coredump.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", metavar="FILE", help="base64 text (from the UART) or a raw partition dump")
    source.add_argument("--port", help="read the core dump partition from the board's flash on this port (esptool)")
    coredump.add_argument("--elf", required=True, metavar="ELF", help="the app ELF the device ran")
    coredump.add_argument("--format", choices=("b64", "raw"), help="FILE's format (default: guessed)")
    coredump.add_argument("--chip", default="esp32p4", help="target chip (default esp32p4)")
    coredump.set_defaults(func=run_coredump)
    log_parser.set_defaults(func=lambda _args: log_parser.print_help() or 2)


def iter_events(stream: IO[bytes], parser: LogParser | None = None) -> Iterator[Event]:
    """Events of a byte stream, read in chunks so logs of any size stream through in bounded memory.

    A harness run log or console slice (each line prefixed with its host time, `1795258970.832396 `)
    is recognised by its first line and parsed without the prefixes, so line numbers still match.
    """
    parser = parser or LogParser(log_events=True)
    first = stream.read(CHUNK_BYTES)
    chunks = _without_host_time(first, stream) if HOST_TIME_PREFIX.match(first) else _chunks(first, stream)
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.finish()


def _chunks(first: bytes, stream: IO[bytes]) -> Iterator[bytes]:
    chunk = first
    while chunk:
        yield chunk
        chunk = stream.read(CHUNK_BYTES)


def _without_host_time(first: bytes, stream: IO[bytes]) -> Iterator[bytes]:
    """The chunks with the host-time prefix removed from each line; only a line's first bytes are held back."""
    at_line_start = True
    head = b""  # the start of a line, held until it is long enough to judge its prefix
    for chunk in _chunks(first, stream):
        out: list[bytes] = []
        pieces = chunk.split(b"\n")
        for index, piece in enumerate(pieces):
            if index:
                out.append(b"\n")
                at_line_start = True
            if not at_line_start:
                out.append(piece)
                continue
            head += piece
            if index == len(pieces) - 1 and len(head) < HOST_TIME_PREFIX_MAX:
                continue  # the line goes on in the next chunk: its prefix may not be complete yet
            out.append(HOST_TIME_PREFIX.sub(b"", head, count=1))
            head, at_line_start = b"", False
        yield b"".join(out)
    if head:
        yield HOST_TIME_PREFIX.sub(b"", head, count=1)


def _open(name: str) -> IO[bytes]:
    if name == "-":
        return sys.stdin.buffer
    path = Path(name)
    if not path.is_file():
        raise ConfigError(f"log file {name!r} not found (or not a file): check the path, or use - to read stdin")
    try:
        return path.open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read log file {name!r}: {exc.strerror}; check its permissions") from exc


def _details(fields: dict[str, Any]) -> str:
    hidden = ("registers", "stack_memory", "decoded", "coredump_decoded")
    shown = {key: value for key, value in fields.items() if key not in hidden}
    for key in ("decoded", "coredump_decoded"):
        if key in fields:
            shown[key] = [f"{frame['address']} {frame['function']}" for frame in fields[key]]
    return " ".join(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in shown.items())


def _decoded(events: Iterator[Event], decoder: BacktraceDecoder) -> Iterator[Event]:
    """Events with their crashes decoded (and a UART core dump with the crash before it)."""
    last_crash: Event | None = None
    for event in events:
        if event.kind in CRASH_EVENT_KINDS:
            last_crash = event
            for note in decode_crashes([event], decoder):
                print(f"hil: {sanitize_line(note)}", file=sys.stderr)
        elif event.kind == "coredump" and event.payload:
            result = decoder.decode_coredump(event.payload, "b64")
            if result.decoded:
                event.fields.update(decoded=[vars(f) for f in result.frames], decoded_by=result.method)
                if last_crash is not None:
                    event.fields["crash_lineno"] = last_crash.lineno
            elif result.note:
                print(f"hil: {sanitize_line(result.note)}", file=sys.stderr)
        yield event


def run_parse(args: argparse.Namespace) -> int:
    """Print the events of a console log as JSON lines or as a table."""
    stream = _open(args.file)
    parser = LogParser(log_events=True)
    decoder = BacktraceDecoder(args.elf) if args.elf else None
    try:
        events = (event for event in iter_events(stream, parser) if not (args.no_log and event.kind == "log"))
        if decoder is not None:
            events = _decoded(events, decoder)
        if args.json:
            out = sys.stdout
            for event in events:
                out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
            out.flush()
        else:
            _print_table(events, args.file)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if parser.truncated_lines:
        print(
            f"hil: {parser.truncated_lines} line(s) longer than {MAX_LINE_CHARS} characters were cut to that length",
            file=sys.stderr,
        )
    return 0


def _print_table(events: Iterator[Event], name: str) -> None:
    """A table of events; every cell is a `Text` (device text is never Rich markup)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"events of {sanitize_line(name)}"), show_lines=False)
    table.add_column("line", justify="right", style="dim")
    table.add_column("kind", style="bold")
    table.add_column("details", overflow="fold")
    styles = {"log": "", "boot": "cyan", "reset": "cyan", "reboot": "cyan", "got_ip": "green", "link_up": "green"}
    count = 0
    for event in events:
        count += 1
        style = styles.get(event.kind, "red" if event.kind not in ("app_info", "hil_stats", "link_down") else "")
        if event.kind == "log":
            details = f"{event.fields['level']} ({event.fields['ms']}) {event.fields['tag']}: {event.fields['msg']}"
        else:
            details = _details(event.fields)
        table.add_row(Text(str(event.lineno)), Text(event.kind, style=style), Text(sanitize(details)))
    console = Console(highlight=False)
    if count:
        console.print(table)
    else:
        console.print(Text(f"no events in {sanitize_line(name)}"))


def run_coredump(args: argparse.Namespace) -> int:
    """Decode one core dump and print the crashed task's backtrace; 1 when it could not be decoded."""
    if args.port:
        payload, core_format = read_coredump_partition(args.port, args.chip), "raw"
    else:
        path = Path(args.file)
        if not path.is_file():
            raise ConfigError(f"core dump file {args.file!r} not found (or not a file): check the path")
        payload = path.read_bytes()
        core_format = args.format or ("b64" if re.fullmatch(rb"[A-Za-z0-9+/=\s]+", payload) else "raw")
    result = BacktraceDecoder(args.elf).decode_coredump(payload, core_format, args.chip)
    if not result.decoded:
        print(f"hil: {sanitize_line(result.note or 'core dump not decoded')}", file=sys.stderr)
        return 1
    print(f"crashed task backtrace (decoded by {result.method}):")
    for number, frame in enumerate(result.frames):
        print(sanitize_line(f"#{number} {frame}"))
    return 0
