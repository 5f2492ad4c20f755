"""Packaging of the project's own files: the wheel carries them as package data under `harness/_project/`.

`hil run`, the virtual board's C builds and the lab's certificates need the scenarios, the firmware
sources and the certificates; `harness/paths.py` finds them there in an installed wheel (and beside the
package in a checkout). Everything under the trees below is packaged (a firmware/host/ Rust + C tree
included, whatever it adds), except build outputs and caches.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROJECT_TREES = ("firmware", "tests/scenarios")
PROJECT_FILES = ("pyproject.toml",)  # the pytest settings `hil run` uses
BUNDLE = Path("harness") / "_project"
# Build outputs and caches, never sources (ESP-IDF's build/ and managed_components/, cargo's target/).
EXCLUDED_DIRS = frozenset({"build", "target", "managed_components", "__pycache__", ".pytest_cache"})
EXCLUDED_FILES = frozenset({"sdkconfig", "sdkconfig.old"})
EXCLUDED_SUFFIXES = frozenset({".pyc", ".pyo"})


def project_files(root: Path = ROOT) -> Iterator[Path]:
    """The project files the wheel carries, relative to ``root``."""
    for tree in PROJECT_TREES:
        for path in sorted((root / tree).rglob("*")):
            relative = path.relative_to(root)
            if not path.is_file() or EXCLUDED_DIRS & set(relative.parts[:-1]):
                continue
            if path.name in EXCLUDED_FILES or path.suffix in EXCLUDED_SUFFIXES:
                continue
            yield relative
    for name in PROJECT_FILES:
        yield Path(name)


class BuildPyWithProject(build_py):
    """build_py that also copies the project files into the package (not for an editable install)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout itself
        for relative in project_files():
            target = Path(self.build_lib) / BUNDLE / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, target)


if __name__ == "__main__":  # setuptools runs this file as __main__; tests import project_files() only
    setup(cmdclass={"build_py": BuildPyWithProject})
