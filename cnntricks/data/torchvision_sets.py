"""`data=cifar10|cifar100|mnist|fashion_mnist|svhn`: torchvision's data sets as uint8 tensors.

Files live under `<data.root>/<name>/` in the layout torchvision expects (see `SETS`);
`data.download=true` lets torchvision fetch them there. Both official splits are converted once,
from the data sets' whole arrays (never image by image), into uint8 [N, 3, S, S] (grey images
repeated to 3 channels; resized once when `data.image_size` differs from the native size) and
cached as `<root>/<name>/cnntricks-<key>.pt`, so later runs skip torchvision's parsing.

Splits: the official train split is shuffled with `data.seed`; the first `data.n_val` images
(default: `data.val_fraction` of it) are the validation split and the next `data.n_train`
(default: all the rest) the training split. The official test split is the test split, or a
random `data.n_test` subset of it. Asking for more images than exist is an error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.datasets

from cnntricks.data.base import (DataError, Split, Splits, cache_key, carve, check_counts, load_cache, resize_square,
                                 rgb, save_cache, subset)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Spec:
    dataset: str  # class name in torchvision.datasets
    files: str  # what must be under <root>/<name>/, for the error message
    layout: str  # axes of the data set's `.data` array: "NHWC", "NHW" (grey) or "NCHW"
    labels: str  # attribute holding the labels


SETS = {
    "cifar10": _Spec("CIFAR10", "cifar-10-batches-py/", "NHWC", "targets"),
    "cifar100": _Spec("CIFAR100", "cifar-100-python/", "NHWC", "targets"),
    "mnist": _Spec("MNIST", "MNIST/raw/ with the 4 idx files", "NHW", "targets"),
    "fashion_mnist": _Spec("FashionMNIST", "FashionMNIST/raw/ with the 4 idx files", "NHW", "targets"),
    "svhn": _Spec("SVHN", "train_32x32.mat and test_32x32.mat", "NCHW", "labels"),
}


def _open(name: str, folder: Path, train: bool, download: bool) -> Any:
    """The torchvision data set, with its errors turned into one line saying what to do."""
    spec = SETS[name]
    split = {"split": "train" if train else "test"} if spec.dataset == "SVHN" else {"train": train}
    try:
        return getattr(torchvision.datasets, spec.dataset)(str(folder), download=download, **split)
    except ImportError as e:  # SVHN reads its .mat files with scipy, which torchvision does not require
        raise DataError(f"data={name}: needs the package {e.name} (pip install {e.name})") from None
    except (RuntimeError, OSError) as e:  # torchvision's "Dataset not found", URLError, ...
        if download:
            # The last line is the cause (MNIST's message lists the mirrors it tried first).
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise DataError(f"data={name}: download into {folder} failed ({reason}); "
                            f"put the files there instead (expected {spec.files})") from None
        raise DataError(f"data={name}: files not found under {folder} (expected {spec.files}); "
                        "put them there or pass data.download=true") from None


def _tensors(name: str, dataset: Any, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    spec = SETS[name]
    images = torch.as_tensor(np.asarray(dataset.data))
    if spec.layout == "NHWC":
        images = images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(getattr(dataset, spec.labels)), dtype=torch.int64)
    return resize_square(rgb(images), image_size), labels


def _convert(name: str, folder: Path, download: bool, image_size: int) -> dict[str, Any]:
    began = time.perf_counter()
    train, test = (_open(name, folder, is_train, download) for is_train in (True, False))
    # SVHN has no `classes`; its labels are the digits (torchvision maps "10" to 0).
    classes = [str(c) for c in getattr(train, "classes", range(10))]
    train_images, train_labels = _tensors(name, train, image_size)
    test_images, test_labels = _tensors(name, test, image_size)
    log.info("%s: converted %d + %d images in %.1fs", name, len(train_labels), len(test_labels),
             time.perf_counter() - began)
    return {"train_images": train_images, "train_labels": train_labels,
            "test_images": test_images, "test_labels": test_labels, "classes": classes}


def load(data_cfg: Any) -> Splits:
    """Train/val carved from the official train split, test from the official test split."""
    check_counts(data_cfg)
    name = data_cfg.name
    folder = Path(data_cfg.root) / name
    path = folder / f"cnntricks-{cache_key(name, data_cfg.image_size)}.pt"
    cached = load_cache(path)
    if cached is None:
        cached = _convert(name, folder, data_cfg.download, data_cfg.image_size)
        save_cache(cached, path)
    official_train = Split(cached["train_images"], cached["train_labels"])
    n_val = data_cfg.n_val or max(1, round(data_cfg.val_fraction * len(official_train.labels)))
    train, val = carve(official_train, n_val, data_cfg.n_train, data_cfg.seed, f"data={name}")
    test = subset(Split(cached["test_images"], cached["test_labels"]), data_cfg.n_test, data_cfg.seed,
                  f"data={name}: data.n_test")
    return Splits(train, val, test, list(cached["classes"]))
