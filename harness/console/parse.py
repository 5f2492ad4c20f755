"""Console bytes -> records: one cleaned text line each, with ESP-IDF log fields when it is a log line.

This layer knows nothing about crashes or events: it splits the byte stream into lines (a line ends
at ``\\n``; every ``\\r`` is dropped, so CR/LF mixes count once), removes every control character and
escape sequence (:mod:`harness.console.sanitize`: colours, but also OSC, DCS and the rest a hostile or
broken DUT could send) and the visible renderings of colour codes some saved logs contain (``␛[`` and
``^[[``), drops the firmware prompt glued before a line and recognises the ESP-IDF log format
``<L> (<time>) <tag>: <message>``. It never raises: undecodable bytes become U+FFFD and simply match
nothing. Memory stays bounded whatever arrives: a line longer than ``MAX_LINE_CHARS`` is cut there (the
rest of it is skipped as it streams in) and counted in ``RecordReader.truncated_lines``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from harness.console.protocol import PROMPT
from harness.console.sanitize import sanitize

# Colour codes as some saved logs render ESC (the visible ``␛``) and as `cat -v` does (``^[``); real ESC
# sequences are the sanitiser's.
_VISIBLE_ANSI = re.compile(r"(?:\u241b|\^\[)\[[0-9;?]*[A-Za-z]")
# Time is milliseconds since boot, or a wall-clock/system time with CONFIG_LOG_TIMESTAMP_SOURCE_SYSTEM.
# The tag ends at the first colon: Wi-Fi blobs print `wifi:connected ...` without a space.
_LOG = re.compile(r"([EWIDV]) \((\d+|[\d:.]+)\) ([^:]{0,64}?): ?(.*)")
# A log line glued after other text (prompt of another app, a half line cut by a reset).
_LOG_ANYWHERE = re.compile(r"(?<![A-Za-z0-9])([EWIDV]) \((\d+|[\d:.]+)\) ([^:\s]{1,64}): ?(.*)")
# Keep pathological lines (a stuck UART without newline) from costing unbounded memory and regex time.
MAX_LINE_CHARS = 16384
# Bytes of a line kept while it is still arriving: more than MAX_LINE_CHARS of 4-byte UTF-8, so a line cut
# here is always longer than MAX_LINE_CHARS once decoded (and counted as truncated).
MAX_LINE_BYTES = 4 * MAX_LINE_CHARS + 4


class Record:
    """One console line after cleaning (a plain slotted class: one is built per line, so it must be cheap).

    Attributes:
        lineno: 1-based line number in the log.
        text: the line without colour codes, line ending or glued prompt.
        level: log level letter (E/W/I/D/V) for ESP-IDF log lines, else None.
        ms: log timestamp in milliseconds for log lines, else None.
        tag: log tag for log lines, else None.
        msg: log message for log lines, else None.
    """

    __slots__ = ("level", "lineno", "ms", "msg", "tag", "text")

    def __init__(
        self,
        lineno: int,
        text: str,
        level: str | None = None,
        ms: int | None = None,
        tag: str | None = None,
        msg: str | None = None,
    ) -> None:
        self.lineno = lineno
        self.text = text
        self.level = level
        self.ms = ms
        self.tag = tag
        self.msg = msg

    def __repr__(self) -> str:
        return f"Record({self.lineno}, {self.text!r})"


def _timestamp_ms(raw: str) -> int | None:
    if raw.isdigit():
        return int(raw)
    # hh:mm:ss.mmm (system time): milliseconds since midnight is the best comparable number.
    parts = raw.split(":")
    try:
        seconds = 0.0
        for part in parts:
            seconds = seconds * 60 + float(part)
    except ValueError:
        return None
    return round(seconds * 1000)


def clean_text(text: str) -> str:
    """Drop every control character (``\\r`` included) and escape sequence of decoded text (one line or many)."""
    if "\u241b" in text or "^[" in text:
        text = _VISIBLE_ANSI.sub("", text)
    return sanitize(text)


def _strip_line(text: str) -> str:
    while text.startswith(PROMPT):
        text = text[len(PROMPT) :]
    if len(text) > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS]
    return text


def make_record(lineno: int, text: str) -> Record:
    """Build the record of a cleaned line, recognising the ESP-IDF log format."""
    # Fast path: a log line starts with `L (`; everything else skips the regex.
    if len(text) > 4 and text[1:3] == " (" and text[0] in "EWIDV":
        match = _LOG.match(text)
    elif ") " in text and " (" in text:
        match = _LOG_ANYWHERE.search(text)
    else:
        match = None
    if match is None:
        return Record(lineno, text)
    level, stamp, tag, msg = match.groups()
    ms = int(stamp) if stamp.isdigit() else _timestamp_ms(stamp)
    return Record(lineno, text, level, ms, tag, msg.rstrip())


class RecordReader:
    """Incremental splitter: feed bytes in any chunks, get complete records in order.

    Args:
        keep: optional prefilter on the cleaned text; lines it rejects produce no record (their
            numbers still count) unless ``keep_all`` is set, which the event layer does while it
            gathers a multi-line event.
    """

    def __init__(self, keep: Callable[[str], bool] | None = None) -> None:
        self._pending = bytearray()
        self._lineno = 0
        self._keep = keep
        self._skipping = False  # inside an over-long line whose start is kept: drop bytes up to its newline
        self.keep_all = False
        self.truncated_lines = 0

    def feed(self, data: bytes) -> Iterator[Record]:
        """Yield the records of every line completed by ``data``, one at a time.

        Lazily, so that ``keep_all`` set by the consumer after one record applies to the next.
        """
        if not data:
            return
        if self._skipping:
            newline = data.find(b"\n")
            if newline < 0:
                return
            self._skipping = False
            data = data[newline:]
        self._pending += data
        end = self._pending.rfind(b"\n")
        if end < 0:
            self._bound_pending()
            return
        # Decoding and cleaning the whole run of complete lines at once is much cheaper than per line,
        # and gives the same text: no UTF-8 sequence or colour code can contain a newline.
        text = clean_text(self._pending[:end].decode("utf-8", "replace"))
        del self._pending[: end + 1]
        self._bound_pending()
        keep = self._keep
        for line in text.split("\n"):
            self._lineno += 1
            if len(line) > MAX_LINE_CHARS:
                self.truncated_lines += 1
                line = _strip_line(line)
            elif line.startswith(PROMPT):
                line = _strip_line(line)
            if keep is None or self.keep_all or keep(line):
                yield make_record(self._lineno, line)

    def _bound_pending(self) -> None:
        """Keep at most the start of an unfinished line; the rest of it is skipped until its newline."""
        if len(self._pending) > MAX_LINE_BYTES:
            del self._pending[MAX_LINE_BYTES:]
            self._skipping = True

    def finish(self) -> list[Record]:
        """Return the record of a last line that has no line ending (a log cut short)."""
        self._skipping = False
        if not self._pending:
            return []
        line = clean_text(self._pending.decode("utf-8", "replace"))
        self._pending.clear()
        self._lineno += 1
        if len(line) > MAX_LINE_CHARS:
            self.truncated_lines += 1
        line = _strip_line(line)
        if self._keep is None or self.keep_all or self._keep(line):
            return [make_record(self._lineno, line)]
        return []
