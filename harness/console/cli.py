"""`hil log parse FILE [--json]`: the typed events of a console log."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from harness.console.events import Event, LogParser
from harness.errors import ConfigError

CHUNK_BYTES = 1 << 20


HOST_TIME_PREFIX = re.compile(rb"^\d{9,11}\.\d{6} ")


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
    parse.set_defaults(func=run_parse)
    log_parser.set_defaults(func=lambda _args: log_parser.print_help() or 2)


def iter_events(stream: IO[bytes]) -> Iterator[Event]:
    """Events of a byte stream, read in chunks so logs of any size stream through in constant memory.

    A harness run log or console slice (each line prefixed with its host time, `1795258970.832396 `)
    is recognised by its first line and parsed without the prefixes, so line numbers still match.
    """
    parser = LogParser(log_events=True)
    first = stream.read(CHUNK_BYTES)
    if HOST_TIME_PREFIX.match(first):
        yield from _iter_prefixed(first, stream, parser)
    else:
        chunk = first
        while chunk:
            yield from parser.feed(chunk)
            chunk = stream.read(CHUNK_BYTES)
    yield from parser.finish()


def _iter_prefixed(first: bytes, stream: IO[bytes], parser: LogParser) -> Iterator[Event]:
    pending = first
    while True:
        more = stream.read(CHUNK_BYTES)
        lines = (pending + more).split(b"\n")
        pending = lines.pop()
        if lines:
            yield from parser.feed(b"\n".join(HOST_TIME_PREFIX.sub(b"", line, count=1) for line in lines) + b"\n")
        if not more:
            break
    if pending:
        yield from parser.feed(HOST_TIME_PREFIX.sub(b"", pending, count=1))


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
    shown = {key: value for key, value in fields.items() if key not in ("registers", "decoded")}
    if "decoded" in fields:
        shown["decoded"] = [f"{frame['address']} {frame['function']}" for frame in fields["decoded"]]
    return " ".join(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in shown.items())


def run_parse(args: argparse.Namespace) -> int:
    """Print the events of a console log as JSON lines or as a table."""
    stream = _open(args.file)
    try:
        events = (event for event in iter_events(stream) if not (args.no_log and event.kind == "log"))
        if args.json:
            out = sys.stdout
            for event in events:
                out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
            out.flush()
            return 0
        _print_table(events, args.file)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return 0


def _print_table(events: Iterator[Event], name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"events of {name}", show_lines=False)
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
        table.add_row(str(event.lineno), f"[{style}]{event.kind}[/]" if style else event.kind, details, style=None)
    console = Console()
    if count:
        console.print(table)
    else:
        console.print(f"no events in {name}")
