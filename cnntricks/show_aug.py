"""`cnntricks show-aug`: look at what the chosen `aug` options do to training images.

The grid has the original images in its first row and one freshly augmented version of each per
following row. The trainer logs the same grid (`augment_grid`) to TensorBoard at the start of training.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor
from torchvision.utils import save_image

from cnntricks.augment import augment_grid, build_augment
from cnntricks.config import ConfigError, group_options
from cnntricks.sampling import class_indices

log = logging.getLogger(__name__)

# Cells of the PNG are enlarged (nearest neighbour) to at least this many pixels, so 32x32 images
# are visible without zooming.
_MIN_CELL = 96


def _one_per_class(labels: Tensor, n_images: int) -> Tensor:
    """Indices of `n_images` training images, cycling through the classes so each one shows up."""
    groups = class_indices(labels)
    picks = [group[round_] for round_ in range(max(map(len, groups))) for group in groups if round_ < len(group)]
    return torch.stack(picks[:n_images])


def show_aug(cfg: DictConfig, out_path: Path, n_images: int = 8, n_rows: int = 4) -> Path:
    """Write the augmentation grid of `cfg.aug` for `n_images` training images of `cfg.data` to
    `out_path` (PNG) and return the path."""
    from cnntricks.train import load_data

    if not group_options(cfg.aug):
        raise ConfigError("aug: no option chosen; pick some, e.g. cnntricks show-aug '+aug=[flip,crop,hsv]'")
    if n_images < 1 or n_rows < 1:
        raise ConfigError(f"n_images={n_images}, n_rows={n_rows}: both must be >= 1")
    train = load_data(cfg).train  # as the trainer sees it (imbalance included)
    augment = build_augment(cfg.aug, train, run_dir=None, cache_dir=Path(cfg.data.root) / ".cache")
    index = _one_per_class(train.labels, n_images)
    torch.manual_seed(cfg.seed)
    grid = augment_grid(augment, train.images[index], train.labels[index], n_rows)
    scale = math.ceil(_MIN_CELL / train.images.shape[-1])
    if scale > 1:
        grid = F.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, out_path)
    log.info("augmentation grid (%s) written to %s", ", ".join(cfg.aug), out_path)
    return out_path
