"""Data sets as uint8 tensors: `load_splits(data_cfg) -> Splits(train, val, test, classes)`.

Each split is `Split(images, labels)` with images uint8 [N, 3, H, W] (contiguous, CPU; grey data
sets repeated to 3 channels) and labels int64 [N]. The source is picked by `data.name`:

* `shapes` (default): procedural shapes, generated and cached on demand (`shapes.py`);
* `cifar10`, `cifar100`, `mnist`, `fashion_mnist`, `svhn`: torchvision's data sets (`torchvision_sets.py`);
* `imagefolder`: your own images under `data.root` (`imagefolder.py`).

Every source caches its tensors on disk, so only the first run pays for generating or decoding.
A data set that cannot be loaded raises `DataError` with a one-line message saying what to do.
"""

from __future__ import annotations

from typing import Any, Callable

from cnntricks.data import imagefolder, shapes, torchvision_sets
from cnntricks.data.base import DataError, Split, Splits

LOADERS: dict[str, Callable[[Any], Splits]] = {
    "shapes": shapes.load,
    **{name: torchvision_sets.load for name in torchvision_sets.SETS},
    "imagefolder": imagefolder.load,
}

__all__ = ["DataError", "LOADERS", "Split", "Splits", "load_splits"]


def load_splits(data_cfg: Any) -> Splits:
    """The train/val/test splits and class names described by `data_cfg` (the `data` config node)."""
    loader = LOADERS.get(data_cfg.name)
    if loader is None:
        raise DataError(f"data.name={data_cfg.name}: must be one of {', '.join(LOADERS)}")
    return loader(data_cfg)
