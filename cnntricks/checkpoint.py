"""Checkpoints: finding and loading them, and every random state needed to continue a run exactly."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "shuffle": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    # Our checkpoints hold numpy RNG states and plain containers: not loadable with weights_only.
    return torch.load(path, map_location=device, weights_only=False)


def find(path: str | Path, name: str = "last.pt") -> Path:
    """A checkpoint file from a path that is either the file or a run directory."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    candidate = path / "checkpoints" / name
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(f"no checkpoint at {path} (expected a .pt file or a run directory with checkpoints/{name})")


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to (checkpoints live in RUN/checkpoints/)."""
    return checkpoint.parent.parent
