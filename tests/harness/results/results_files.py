"""Writing synthetic results documents to disk as results files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_results(directory: Path, documents: list[dict[str, Any]]) -> list[Path]:
    """Write documents as ``<run_id>.json`` results files."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in documents:
        path = directory / f"{doc['run_id']}.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        paths.append(path)
    return paths
