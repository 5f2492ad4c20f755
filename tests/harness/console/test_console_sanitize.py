"""Hostile console text: no control character or escape sequence survives parsing or `hil log parse`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.console.events import LogParser, parse_bytes
from harness.console.parse import MAX_LINE_CHARS
from harness.console.sanitize import sanitize

OSC52 = "\x1b]52;c;aGFja2Vk\x07"
HOSTILE_SEQUENCES = {
    "osc52 bel": OSC52,
    "osc52 st": "\x1b]52;c;aGFja2Vk\x1b\\",
    "osc8 link": "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "title": "\x1b]0;owned\x07\x1b]2;owned\x07",
    "clear": "\x1b[2J\x1b[H\x1bc",
    "dcs": "\x1bP1$qm\x1b\\",
    "apc pm sos": "\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\",
    "8-bit c1": "\x9b31m\x9d0;t\x9c\x90q\x9c\x85",
    "charset": "\x1b(0\x1b)B\x1b#8",
    "lone esc": "\x1b",
    "unterminated osc": "\x1b]52;c;cut short",
    "c0": "\x00\x01\x07\x08\x0b\x0c\x0e\x1f\x7f\r",
}


@pytest.mark.parametrize("sequence", HOSTILE_SEQUENCES.values(), ids=HOSTILE_SEQUENCES.keys())
def test_every_control_and_escape_sequence_is_removed(sequence: str) -> None:
    cleaned = sanitize(f"before {sequence} after")
    assert cleaned.startswith("before ")
    assert not any((ord(ch) < 0x20 and ch not in "\t\n") or 0x7F <= ord(ch) <= 0x9F for ch in cleaned), cleaned
    assert "52;c" not in cleaned and "owned" not in cleaned and "evil" not in cleaned


def test_printable_text_tab_newline_and_unicode_are_kept() -> None:
    text = "I (1) m: [/] [link=https://x]y[/link] µs ✓ 温度\tcol\nnext"
    assert sanitize(text) == text
    assert sanitize("a\ud800b") == "ab"  # a lone surrogate from JSON


def test_parser_events_carry_no_escape_sequences() -> None:
    log = (
        f"Guru Meditation Error: Core  0 panic'ed (Illegal {OSC52}instruction). Exception was unhandled.\n"
        "MEPC    : 0x4ff0a3b6  RA      : 0x4ff0a3b2  SP      : 0x4ff3c5d0  GP      : 0x4ff16b00\n"
        "\n"
        f"I (10) app\x1b]0;t\x07: hello \x1b]8;;https://e/\x1b\\link\x1b]8;;\x1b\\ \x9b2J\n"
    ).encode()
    events = parse_bytes(log)
    panic = next(e for e in events if e.kind == "panic")
    assert panic.fields["reason"] == "Illegal instruction"
    log_event = next(e for e in events if e.kind == "log")
    assert log_event.fields["tag"] == "app" and log_event.fields["msg"] == "hello link"
    assert "\x1b" not in json.dumps([e.to_dict() for e in events], ensure_ascii=False)


def _run_log_parse(data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "log", "parse", "-", *args],
        input=data,
        capture_output=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("mode", [(), ("--json",)], ids=["table", "json"])
def test_log_parse_prints_no_escape_and_never_takes_device_text_as_markup(mode: tuple[str, ...]) -> None:
    hostile = "".join(f"I ({i}) m: {seq} x\n" for i, seq in enumerate(HOSTILE_SEQUENCES.values()))
    data = (hostile + "I (1) m: [/]\nI (2) m: [link=https://evil.example/]click[/link] [bold]b\n").encode()
    result = _run_log_parse(data, *mode)
    assert result.returncode == 0, result.stderr
    assert b"\x1b" not in result.stdout and b"\x9b" not in result.stdout and b"\x07" not in result.stdout
    assert b"[/]" in result.stdout and b"[link=https://evil.example/]click[/link]" in result.stdout


def test_a_100_mb_line_without_newline_streams_in_bounded_memory() -> None:
    script = (
        "import resource, sys\n"
        "from harness.cli import main\n"
        "code = main(['log', 'parse', '-', '--json'])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    block = b"A" * (1 << 20)
    try:
        assert process.stdin is not None
        for _ in range(100):
            process.stdin.write(block)
        process.stdin.write(b"\nRebooting...\n")
        process.stdin.close()
        assert process.stdout is not None and process.stderr is not None
        out, err = process.stdout.read(), process.stderr.read()  # small: one event, two lines
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, err
    max_rss_kib = int(err.decode().strip().splitlines()[-1])
    assert max_rss_kib < 150 * 1024, f"peak RSS {max_rss_kib} KiB"
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows == [{"kind": "reboot", "lineno": 2}]
    assert b"1 line(s) longer than" in err


def test_long_lines_are_cut_and_counted_however_they_arrive() -> None:
    parser = LogParser()
    line = "I (5) m: " + "x" * (3 * MAX_LINE_CHARS)
    events = []
    for start in range(0, len(line), 1000):
        events += parser.feed(line[start : start + 1000].encode())
    events += parser.feed(b"\nI (6) m: ok\n") + parser.finish()
    assert [len(e.fields["msg"]) for e in events] == [MAX_LINE_CHARS - len("I (5) m: "), 2]
    assert parser.truncated_lines == 1
