"""The one sanitiser for untrusted text: device console output, results files, test names and messages.

A terminal acts on control characters and escape sequences: an OSC 52 sequence writes the clipboard, OSC 8
makes hyperlinks, OSC 0/2 retitle the window, ``ESC c`` and ``CSI 2 J`` clear the screen. Text from a DUT or
from a results file must never reach a terminal (or the store, or a failure message) with any of them, so
:func:`sanitize` removes:

- every escape sequence: CSI (``ESC [`` and 8-bit ``0x9b``), the string sequences OSC, DCS, SOS, PM and APC
  (``ESC ]``/``P``/``X``/``^``/``_`` and their 8-bit forms) up to their terminator (BEL, ``ESC \\`` or
  ``0x9c``) or the end of the line when it never comes, every other ``ESC`` sequence and a lone ``ESC``;
- every remaining C0 control except tab and newline, DEL, every C1 control (U+0080-U+009F);
- lone UTF-16 surrogates (JSON can carry them; no store or terminal encoding accepts them).

Printable text, including non-ASCII, is kept as it is.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    # CSI: parameters, intermediates, final byte (a sequence cut short loses what it has).
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    # OSC, DCS, SOS, PM, APC: a string up to BEL / ST, or to the end of the line when unterminated.
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    # Any other escape sequence (nF, Fp, Fe, Fs: intermediates then a final byte), or a lone ESC.
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
    # Remaining C0 controls except tab and newline, DEL, C1 controls, lone surrogates.
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]"
)


# Fast paths for console output, which is mostly plain text with colour codes and CR/LF line ends.
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def sanitize(text: str) -> str:
    """``text`` without control characters (tab and newline kept) or terminal escape sequences."""
    if text.isprintable():
        return text
    if "\x1b" in text:
        text = _COLOUR.sub("", text)
    if "\r" in text:
        text = text.replace("\r", "")
    if _CONTROL.search(text) is None:
        return text
    return _UNSAFE.sub("", text)


def sanitize_line(text: str) -> str:
    """Like :func:`sanitize`, for one line: newlines and tabs become spaces too."""
    return sanitize(text).replace("\n", " ").replace("\t", " ")
