"""Where the project's own files are: scenarios, firmware sources, certificates. The one place that knows.

Two layouts, one answer:
- a checkout (or an editable install of one): the files are beside the `harness` package, at the root
  of the repository;
- an installed wheel: the build copied the same tree into the package as `harness/_project/`
  (`setup.py` says which files), so `hil run` and the virtual board's C builds work from any directory.

Both layouts have the same relative paths (`tests/scenarios/test_ping.py`, `firmware/services/...`), so
pytest node ids, and with them the results history, are the same whichever way the harness was installed.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_ROOT = PACKAGE_DIR / "_project"
CHECKOUT_ROOT = PACKAGE_DIR.parent


def project_root() -> Path:
    """The directory holding `firmware/` and `tests/scenarios/` (bundled copy first, else the checkout).

    Raises:
        ConfigError: neither layout is there (a broken install).
    """
    for root in (BUNDLED_ROOT, CHECKOUT_ROOT):
        if (root / "firmware").is_dir() and (root / "tests" / "scenarios").is_dir():
            return root
    raise ConfigError(
        f"the project's files (firmware/, tests/scenarios/) are neither in {BUNDLED_ROOT} nor in {CHECKOUT_ROOT}: "
        "reinstall the package from a wheel built with `python -m build`, or run from a checkout"
    )


def checkout_root() -> Path | None:
    """The git checkout the package runs from, or None for an installed wheel (the project's own tests)."""
    return CHECKOUT_ROOT if (CHECKOUT_ROOT / "tests" / "harness").is_dir() else None


def scenarios_dir() -> Path:
    """The HIL suite (`tests/scenarios`)."""
    return project_root() / "tests" / "scenarios"


def firmware_dir() -> Path:
    """The firmware sources (`firmware/`: hil_app, services, host, certs, PROTOCOL.md, vectors)."""
    return project_root() / "firmware"


def certs_dir() -> Path:
    """The lab's TEST-ONLY certificates and keys (`firmware/certs`)."""
    return firmware_dir() / "certs"


def import_root() -> Path:
    """The directory to put on PYTHONPATH so a detached child can `import harness`."""
    return PACKAGE_DIR.parent
