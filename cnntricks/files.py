"""Atomic file writes: write a temporary file beside the target, then rename it into place.

Readers (a resumed run, a parallel sweep job sharing a cache) never see half a file, and a crash
mid-write leaves the previous version intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

import torch


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(file)` on a fresh temporary file in `path`'s folder, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: Path) -> None:
    """`torch.save`, atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def atomic_copy(src: Path, dst: Path) -> None:
    def copy(f: IO[bytes]) -> None:
        with open(src, "rb") as source:
            shutil.copyfileobj(source, f)

    atomic_write(dst, copy)
