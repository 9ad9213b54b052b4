"""The offline commands' way into a node's var dir: ``VAR/state.lmdb``, checked and opened."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from phalanx.errors import ConfigError
from phalanx.storage import Storage

__all__ = ["open_state", "state_path"]


def state_path(var_dir: str | Path) -> Path:
    """``VAR/state.lmdb``; :class:`ConfigError` naming what is missing if there is none."""
    if not Path(var_dir).is_dir():
        raise ConfigError(f"var dir {str(var_dir)!r} does not exist")
    path = Path(var_dir) / "state.lmdb"
    if not (path / "data.mdb").is_file():
        raise ConfigError(f"no phalanx state at {str(path)!r} (has a node run with this var dir?)")
    return path


@contextmanager
def open_state(var_dir: str | Path, *, readonly: bool = False) -> Iterator[Storage]:
    """The node's storage, opened offline (next to a running node too), closed on exit."""
    storage = Storage(state_path(var_dir), readonly=readonly)
    try:
        yield storage
    finally:
        storage.close()
