"""Board kinds: what `--board NAME` can be, each one a small object registered by its module.

A kind says which options it adds, how it checks them, and how it makes the lab and the board of a run.
Kinds are found, not listed: every module directly under `harness/boards/` (or `kind.py` of a package
there) that defines ``BOARD_KIND`` is one, so a new kind (a labgrid place, a stack variant of the virtual
board) is a new module and nothing else. The session, the plugin and the scenarios never compare kind
names; what differs between boards is a `Board` method with a default (`harness/boards/board.py`).

A kind may *refine* another: the same board reached another way (an esp32p4 held in a labgrid place). It has
no `--board` value of its own: it is chosen with `--board <refined kind>` when its options are given, and its
options belong to that kind (so the refined kind's options, such as the build to flash, apply to it too).
"""

from __future__ import annotations

import abc
import functools
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.boards.board import Board
    from harness.config import LabConfig
    from harness.lab.base import Lab


class KindOptions:
    """The option group a kind adds its options to (their help names the kind).

    Attributes:
        embedded_plugin: pytest-embedded's plugin is (or will be) loaded in this session; it already owns
            the spellings it registers (`--port`, `--build-dir`, ...), so a kind must not add those again.
    """

    def __init__(self, group: Any, kind: str, embedded_plugin: bool) -> None:
        self._group = group
        self._kind = kind
        self.embedded_plugin = embedded_plugin

    def addoption(self, *flags: str, **kwargs: Any) -> None:
        """Add an option (as `pytest.OptionGroup.addoption`) owned by this kind; its help names the kind."""
        if "help" in kwargs:
            kwargs["help"] = f"{kwargs['help']} [--board {self._kind}]"
        self._group.addoption(*flags, **kwargs)


class BoardKind(abc.ABC):
    """One kind of board under test.

    Attributes:
        name: the value of ``--board``.
        summary: one line for ``--board``'s help.
        is_default: the kind used when ``--board`` is not given (exactly one kind has it).
        uses_board_tables: ``[boards.<name>]`` tables of hil.toml describe boards of this kind.
        target: the ESP-IDF target (chip) of this kind's boards, as pytest-embedded's `target` names it.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    is_default: ClassVar[bool] = False
    uses_board_tables: ClassVar[bool] = False
    target: ClassVar[str] = "esp32p4"
    refines: ClassVar[str | None] = None

    def selected(self, options: Any) -> bool:
        """For a kind that refines another: whether these options ask for it (default: never)."""
        return False

    def add_options(self, group: KindOptions) -> None:  # noqa: B027 - optional, most kinds add nothing
        """Add the options only this kind understands (default: none)."""

    def check_options(self, options: Any, config: LabConfig) -> None:  # noqa: B027 - optional
        """Refuse bad option values before anything starts (raise ConfigError); called for the chosen kind."""

    @abc.abstractmethod
    def make_lab(self, options: Any, config: LabConfig, run_id: str, log_dir: Path) -> Lab:
        """The (not yet started) lab of a run: the host side of the cable to the board."""

    @abc.abstractmethod
    def make_board(self, options: Any, config: LabConfig, lab: Lab, log_dir: Path) -> Board:
        """The (not yet started) board of a run, cabled to the started ``lab``."""


def _kind_modules() -> Iterator[str]:
    import harness.boards as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name in ("board", "kinds"):
            continue
        yield f"{package.__name__}.{module.name}" + (".kind" if module.ispkg else "")


@functools.cache
def board_kinds() -> dict[str, BoardKind]:
    """Every board kind, by name, default kind first."""
    found: dict[str, BoardKind] = {}
    for module_name in _kind_modules():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # a package under harness/boards that is not a kind
            raise
        kind = getattr(module, "BOARD_KIND", None)
        if isinstance(kind, BoardKind):
            if kind.name in found:
                raise RuntimeError(f"two board kinds are called {kind.name!r} ({module_name})")
            found[kind.name] = kind
    defaults = [kind.name for kind in found.values() if kind.is_default]
    if len(defaults) != 1:
        raise RuntimeError(f"exactly one board kind must be the default, found {defaults or 'none'}")
    return dict(sorted(found.items(), key=lambda item: (not item[1].is_default, item[0])))


def board_values() -> dict[str, BoardKind]:
    """The kinds `--board` names (refinements are chosen through the kind they refine), default first."""
    return {name: kind for name, kind in board_kinds().items() if kind.refines is None}


def option_owner(kind: BoardKind) -> str:
    """The `--board` value whose runs may use this kind's options."""
    return kind.refines or kind.name


def chosen_kind(options: Any) -> BoardKind:
    """The kind of a run: the one `--board` names, or the kind refining it whose options were given."""
    base = board_kind(options.board)
    for kind in board_kinds().values():
        if kind.refines == base.name and kind.selected(options):
            return kind
    return base


def default_kind() -> str:
    """The name of the kind used without ``--board``."""
    return next(iter(board_kinds()))


def board_kind(name: str) -> BoardKind:
    """The kind called ``name``.

    Raises:
        ConfigError: no such kind (the message lists the kinds).
    """
    kinds = board_kinds()
    if name not in kinds:
        raise ConfigError(f"unknown board kind {name!r}; known: {', '.join(kinds)}")
    return kinds[name]
