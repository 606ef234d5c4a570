"""What every data source shares: the split types, the error type, subsets, resizing and caches.

A data source turns its files (or its generator) into `Split`s once; everything here is whole-tensor
work, so no per-image Python runs after decoding.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, NamedTuple, Optional

import torch
from torchvision.transforms.v2 import functional as TF

from cnntricks.config import ConfigError
from cnntricks.files import atomic_save

log = logging.getLogger(__name__)

# Bumped whenever a cached tensor would come out differently, so stale caches are not reused.
CACHE_VERSION = 1


class DataError(ConfigError):
    """A data set cannot be loaded; the message is the one line the user sees."""


class Split(NamedTuple):
    images: torch.Tensor  # uint8 [N, 3, H, W], contiguous, CPU
    labels: torch.Tensor  # int64 [N]


class Splits(NamedTuple):
    train: Split
    val: Split
    test: Split
    classes: list[str]


def rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W] or [N, 1|3, H, W] -> contiguous uint8 [N, 3, H, W] (grey repeated)."""
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images.contiguous()


def resize_square(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize a uint8 [N, 3, H, W] batch to size x size: shorter side to `size`, then centre crop.

    Square inputs are plainly resized. Chunked so a large set never holds a float copy of itself.
    """
    if images.shape[-2:] == (size, size):
        return images
    parts = [TF.center_crop(TF.resize(part, size, antialias=True), [size, size])
             for part in images.split(chunk)]
    return torch.cat(parts).contiguous()


def check_counts(data_cfg: Any) -> None:
    """Reject sizes and fractions that cannot make three non-empty splits."""
    name = data_cfg.name
    for key in ("n_train", "n_val", "n_test"):
        value = getattr(data_cfg, key)
        if value is not None and value < 1:
            raise DataError(f"data={name}: data.{key}={value}: must be >= 1 (or null for all)")
    if not 0.0 < data_cfg.val_fraction < 1.0:
        raise DataError(f"data={name}: data.val_fraction={data_cfg.val_fraction}: must be in (0, 1)")
    if data_cfg.image_size < 8:
        raise DataError(f"data={name}: data.image_size={data_cfg.image_size}: must be >= 8")


def take(split: Split, index: torch.Tensor) -> Split:
    """The samples at `index`, kept in their original order (sequential memory access, stable output)."""
    index = index.sort().values
    return Split(split.images[index].contiguous(), split.labels[index])


def subset(split: Split, n: Optional[int], seed: int, what: str) -> Split:
    """A deterministic random subset of `n` samples (all of them when n is None)."""
    available = len(split.labels)
    if n is None or n == available:
        return split
    if n > available:
        raise DataError(f"{what}={n}: only {available} images available")
    return take(split, torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:n])


def carve(split: Split, n_val: int, n_train: Optional[int], seed: int, what: str) -> tuple[Split, Split]:
    """Split `split` into (train, val): `n_val` random samples for val, `n_train` (or the rest) for train."""
    available = len(split.labels)
    n_rest = available - n_val
    if n_rest < 1 or (n_train is not None and n_train > n_rest):
        wanted = n_val + (n_train if n_train is not None else 1)
        raise DataError(f"{what}: data.n_val + data.n_train = {wanted} > {available} training images available")
    order = torch.randperm(available, generator=torch.Generator().manual_seed(seed))
    return take(split, order[n_val:n_val + (n_train or n_rest)]), take(split, order[:n_val])


def cache_key(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (plus the cache version)."""
    text = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_cache(obj: Any, path: Path) -> None:
    """`atomic_save`, but a cache that cannot be written (read-only data folder) only costs a warning."""
    try:
        atomic_save(obj, path)
    except OSError as e:
        log.warning("could not write the cache %s (%s): the data will be prepared again next time", path, e)


def load_cache(path: Path) -> Optional[dict[str, Any]]:
    """The cached dict at `path`, or None when there is none (or it is unreadable, e.g. truncated)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # a corrupt cache is rebuilt, never fatal
        return None
