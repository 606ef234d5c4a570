"""`data=imagefolder data.root=DIR`: your own images, decoded once into a cached uint8 tensor.

Layout (a class is a folder name; hidden entries and files of other types are ignored; class
folders may contain sub-folders):

    DIR/train/<class>/*.jpg|.png|...   required; or DIR/<class>/* directly (one folder of classes)
    DIR/val/<class>/*                  optional; without it, a random `data.val_fraction` of train
                                       (`data.seed`) is the validation split
    DIR/test/<class>/*                 optional; without it, the test split *is* the validation
                                       split (a warning says so), as for data sets that ship a
                                       train and a val folder only

Classes are the sorted folder names under train; val and test may lack a class but not add one.
`data.n_train`, `data.n_val`, `data.n_test` take random subsets (`data.seed`) of the splits.

Every image is decoded to RGB with Pillow (torchvision.io's decoders are deprecated; Pillow also
reads BMP and TIFF, and decodes large JPEGs at a reduced scale directly), its shorter side
resized to `data.image_size` and centre-cropped to a square, so the aspect ratio is kept and the
borders of non-square images are cut. Decoding runs in `data.workers` threads
(0: one per CPU) over chunks of files, once: the result is cached in `DIR/.cnntricks-cache/`,
keyed by every file's path, size and modification time and by the image size, so adding or
changing a file (or the size) decodes again. That folder can be deleted at any time.
"""

from __future__ import annotations

import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from cnntricks.data.base import (DataError, Split, Splits, cache_key, carve, check_counts, load_cache, resize_square,
                                 save_cache, subset)

log = logging.getLogger(__name__)

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
SPLITS = ("train", "val", "test")
CACHE_DIR = ".cnntricks-cache"
MAX_CHUNK = 256  # files per task: small enough to balance the workers


def _folders(root: Path) -> dict[str, Path]:
    """The split folders present under `root` (train always)."""
    if not root.is_dir():
        raise DataError(f"data=imagefolder: data.root={root} is not a directory; pass data.root=DIR "
                        "with DIR/train/<class>/*.jpg (val/ and test/ optional)")
    found = {split: root / split for split in SPLITS if (root / split).is_dir()}
    if "train" in found:
        return found
    if found:
        raise DataError(f"data=imagefolder: {root} has {'/'.join(found)}/ but no train/ folder")
    return {"train": root}  # one folder of class folders, split by data.val_fraction


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        Path(dirpath) / name
        for dirpath, dirnames, names in os.walk(folder, followlinks=True)
        if not any(part.startswith(".") for part in Path(dirpath).relative_to(folder).parts)
        for name in names
        if not name.startswith(".") and name.lower().endswith(EXTENSIONS)
    )


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))  # skips CACHE_DIR too


def _scan(folders: dict[str, Path]) -> tuple[list[str], list[tuple[Path, int, int]]]:
    """Classes, and every (file, label, split index) in a fixed order."""
    train = folders["train"]
    class_dirs = _class_dirs(train)
    classes = [d.name for d in class_dirs]
    if len(classes) < 2:
        raise DataError(f"data=imagefolder: {train} has {len(classes)} class folder(s); need at least 2 "
                        f"({train}/<class>/*.jpg)")
    files = []
    for split_index, split in enumerate(SPLITS):
        if split not in folders:
            continue
        found = 0
        for d in _class_dirs(folders[split]):
            if d.name not in classes:
                raise DataError(f"data=imagefolder: {d} is not a class of {train} ({', '.join(classes)})")
            images = _images_in(d)
            if not images and split == "train":
                raise DataError(f"data=imagefolder: {d} has no images ({', '.join(EXTENSIONS)})")
            files += [(path, classes.index(d.name), split_index) for path in images]
            found += len(images)
        if not found:
            raise DataError(f"data=imagefolder: {folders[split]} has no images in class folders")
    return classes, files


def _decode(path: str, size: int) -> torch.Tensor:
    """uint8 [3, H, W] RGB of one file (the first frame of an animation), shorter side >= size."""
    try:
        with Image.open(path) as pil:
            pil.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when the file is much larger
            return torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1)
    except OSError as e:  # PIL's UnidentifiedImageError, truncated files
        raise DataError(f"data=imagefolder: cannot decode {path} ({e})") from None


def _decode_chunk(paths: list[str], size: int) -> torch.Tensor:
    """uint8 [n, 3, size, size] of a chunk of files."""
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    for i, path in enumerate(paths):
        out[i] = resize_square(_decode(path, size).unsqueeze(0), size)[0]
    return out


def _decode_all(paths: list[str], size: int, workers: int) -> torch.Tensor:
    # Threads, not processes: Pillow's decoders and torch's resize release the GIL, and threads
    # need no start-up imports, no pickling and no `if __name__ == "__main__"` guard in user scripts.
    chunk = max(1, min(MAX_CHUNK, math.ceil(len(paths) / (4 * workers))))
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    with ThreadPoolExecutor(min(workers, len(chunks))) as pool:
        return torch.cat(list(pool.map(_decode_chunk, chunks, repeat(size))))


def _decoded(root: Path, folders: dict[str, Path], image_size: int, workers: int) -> dict[str, Any]:
    """{images, labels, split, classes} of every file, from the cache when the files are unchanged."""
    classes, files = _scan(folders)
    listing = []
    for path, label, split in files:
        stat = path.stat()
        listing.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns, label, split))
    cache = root / CACHE_DIR / f"{cache_key('imagefolder', image_size, classes, listing)}.pt"
    cached = load_cache(cache)
    if cached is not None:
        return cached
    workers = workers or os.cpu_count() or 1
    began = time.perf_counter()
    log.info("imagefolder: decoding %d images with %d thread(s)", len(files), workers)
    images = _decode_all([str(path) for path, _, _ in files], image_size, workers)
    log.info("imagefolder: decoded in %.1fs -> %s", time.perf_counter() - began, cache)
    decoded = {"images": images, "labels": torch.tensor([f[1] for f in files], dtype=torch.int64),
               "split": torch.tensor([f[2] for f in files], dtype=torch.int8), "classes": classes}
    save_cache(decoded, cache)
    return decoded


def load(data_cfg: Any) -> Splits:
    """The splits of the folder tree at `data.root` (see the module docstring for the rules)."""
    check_counts(data_cfg)
    root = Path(data_cfg.root)
    folders = _folders(root)
    decoded = _decoded(root, folders, data_cfg.image_size, data_cfg.workers)
    parts: dict[str, Optional[Split]] = {}
    for index, split in enumerate(SPLITS):
        mask = decoded["split"] == index
        parts[split] = Split(decoded["images"][mask], decoded["labels"][mask]) if split in folders else None
    what = "data=imagefolder"
    if parts["val"] is None:
        train_all = parts["train"]
        n_val = data_cfg.n_val or max(1, round(data_cfg.val_fraction * len(train_all.labels)))
        train, val = carve(train_all, n_val, data_cfg.n_train, data_cfg.seed, what)
    else:
        train = subset(parts["train"], data_cfg.n_train, data_cfg.seed, f"{what}: data.n_train")
        val = subset(parts["val"], data_cfg.n_val, data_cfg.seed, f"{what}: data.n_val")
    if parts["test"] is None:
        log.warning("imagefolder: no %s/test folder: the test split is the validation split", root)
        test = subset(val, data_cfg.n_test, data_cfg.seed, f"{what}: data.n_test")
    else:
        test = subset(parts["test"], data_cfg.n_test, data_cfg.seed, f"{what}: data.n_test")
    return Splits(train, val, test, list(decoded["classes"]))
