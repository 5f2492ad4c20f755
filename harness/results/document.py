"""Reading and validating a results file (format: docs/ARCHITECTURE.md) before anything stores or shows it.

A results file is untrusted input: it may be truncated, not UTF-8, nested a thousand levels deep, or hold a
dict where a string belongs, a metric of 10^400 or a counter of 2^70. Every field the store or a view uses is
checked here for type and range, and the first problem found is reported as a :class:`ResultsError` that
names the file and the field. Text is sanitised where it is shown or stored, not here: the document itself is
kept exactly as it was.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.console.sanitize import sanitize
from harness.errors import HilError

RESULTS_SCHEMA = 1
OUTCOMES = ("passed", "failed", "skipped", "error", "interrupted")
DIRECTIONS = ("higher", "lower")
INT64_MAX = 2**63 - 1  # counters and line numbers are stored as 64-bit integers
MAX_ID_CHARS = 512

# Optional string fields of the objects a results file holds (run level and nested objects).
_RUN_STRINGS = ("finished", "harness_version", "host", "console_log", "junit", "stack")
_OBJECT_STRINGS = {
    "board": ("kind", "id", "mac"),
    "firmware": ("app", "app_version", "idf", "elf_sha256", "chip", "chip_rev", "git_commit", "commit", "stack"),
    "link": ("kind", "duplex"),
    "config": ("fingerprint", "source"),
    "source": ("commit", "branch", "base_branch", "pr", "ci", "ci_job_url", "commit_url", "repository"),
}
_OBJECT_NUMBERS = {"link": ("rate_mbps", "mtu", "goodput_ceiling_mbps")}


class ResultsError(HilError):
    """A results file or a request about results is invalid (the message names the file and the field)."""

    def __init__(self, message: str) -> None:
        super().__init__(sanitize(message))


def _kind(value: Any) -> str:
    return (
        "null"
        if value is None
        else {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)
    )


def is_finite_number(value: Any) -> bool:
    """A JSON number (not a boolean) that fits a double and is finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond the double range, e.g. 10**400
        return False


def is_int64(value: Any) -> bool:
    """A JSON integer (not a boolean) that fits a signed 64-bit column."""
    return isinstance(value, int) and not isinstance(value, bool) and -INT64_MAX - 1 <= value <= INT64_MAX


def parse_time(text: Any, field: str) -> float:
    """Seconds since the epoch of an ISO-8601 time (UTC when it has no offset)."""
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, TypeError, ValueError) as exc:
        raise ResultsError(f"{field} is not an ISO-8601 time: {text!r:.80}") from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def _optional_strings(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise ResultsError(f"{where}.{key}: expected a string or null, got {_kind(value)}")


def _optional_numbers(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        value = obj.get(key)
        if value is not None and not is_finite_number(value):
            raise ResultsError(f"{where}.{key}: expected a finite number or null, got {_kind(value)} {value!r:.40}")


def _optional_object(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ResultsError(f"{where}: '{key}' must be an object, got {_kind(value)}")
    return value


def _optional_list(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ResultsError(f"{where}: '{key}' must be a list, got {_kind(value)}")
    return value


def _validate_test(test: Any, where: str) -> None:
    if not isinstance(test, dict) or not isinstance(test.get("nodeid"), str) or not test["nodeid"]:
        raise ResultsError(f"{where}: each test needs a string 'nodeid'")
    if len(test["nodeid"]) > 4 * MAX_ID_CHARS:
        raise ResultsError(f"{where}: 'nodeid' is longer than {4 * MAX_ID_CHARS} characters")
    if test.get("outcome") not in OUTCOMES:
        raise ResultsError(f"{where}: outcome {test.get('outcome')!r:.40} is not one of {', '.join(OUTCOMES)}")
    _optional_strings(test, ("message", "console_slice"), where)
    _optional_numbers(test, ("duration_s",), where)
    for j, metric in enumerate(_optional_list(test, "metrics", where)):
        mwhere = f"{where}.metrics[{j}]"
        if not isinstance(metric, dict) or not isinstance(metric.get("name"), str) or not metric["name"]:
            raise ResultsError(f"{mwhere}: each metric needs a string 'name'")
        name = f"{mwhere} ({metric['name']:.80})"
        if not is_finite_number(metric.get("value")):
            raise ResultsError(f"{name}: value {metric.get('value')!r:.40} is not a finite number")
        if metric.get("better") not in DIRECTIONS:
            raise ResultsError(f"{name}: 'better' must be 'higher' or 'lower', got {metric.get('better')!r:.40}")
        _optional_strings(metric, ("unit",), name)
        _optional_numbers(metric, ("ceiling",), name)
    counters = test.get("counters")
    if counters is not None and not isinstance(counters, dict):
        raise ResultsError(f"{where}: 'counters' must be an object, got {_kind(counters)}")
    for name, delta in (counters or {}).items():
        if not is_int64(delta):
            raise ResultsError(f"{where}.counters[{name!r:.80}]: delta {delta!r:.40} is not a 64-bit integer")
    for j, event in enumerate(_optional_list(test, "events", where)):
        if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
            raise ResultsError(f"{where}.events[{j}]: each event needs a string 'kind'")
        lineno = event.get("lineno")
        if lineno is not None and not is_int64(lineno):
            raise ResultsError(f"{where}.events[{j}]: lineno {lineno!r:.40} is not an integer")


def validate_document(doc: Any, origin: str = "results file") -> dict[str, Any]:
    """Check a results document against the format in docs/ARCHITECTURE.md.

    Raises:
        ResultsError: naming the first problem found and where.
    """
    if not isinstance(doc, dict):
        raise ResultsError(f"{origin}: expected a JSON object, got {_kind(doc)}")
    if doc.get("schema") != RESULTS_SCHEMA:
        raise ResultsError(
            f"{origin}: unsupported results schema {doc.get('schema')!r:.40} (this harness reads "
            f"schema {RESULTS_SCHEMA}); re-run with a matching harness version"
        )
    for key in ("run_id", "started"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ResultsError(f"{origin}: missing or empty {key!r}")
    if len(doc["run_id"]) > MAX_ID_CHARS:
        raise ResultsError(f"{origin}: 'run_id' is longer than {MAX_ID_CHARS} characters")
    parse_time(doc["started"], f"{origin}: started")
    _optional_strings(doc, _RUN_STRINGS, origin)
    if doc.get("interrupted") is not None and not isinstance(doc["interrupted"], bool):
        raise ResultsError(f"{origin}: 'interrupted' must be true or false, got {_kind(doc['interrupted'])}")
    for key, strings in _OBJECT_STRINGS.items():
        obj = _optional_object(doc, key, origin)
        _optional_strings(obj, strings, f"{origin}: {key}")
        _optional_numbers(obj, _OBJECT_NUMBERS.get(key, ()), f"{origin}: {key}")
    components = _optional_object(_optional_object(doc, "firmware", origin), "components", f"{origin}: firmware")
    _optional_strings(components, ("esp_smoltcp",), f"{origin}: firmware.components")
    if not isinstance(doc.get("tests"), list):
        raise ResultsError(f"{origin}: 'tests' must be a list")
    for i, test in enumerate(doc["tests"]):
        _validate_test(test, f"{origin}: tests[{i}]")
    return doc


def load_results_file(path: str | Path) -> dict[str, Any]:
    """Read and validate one results file.

    Raises:
        ResultsError: the file cannot be read, is not UTF-8 JSON, or is not a valid results document.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultsError(f"cannot read results file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ResultsError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); is it a results file?"
        ) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); was the run interrupted while writing it?"
        ) from exc
    except RecursionError as exc:
        raise ResultsError(f"{path}: JSON nested too deeply to be a results file") from exc
    return validate_document(doc, str(path))
