"""Data sets: the shapes generator, imagefolder decoding and caching, torchvision sets from local files."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from cnntricks.config import DataConfig
from cnntricks.data import DataError, Split, load_splits
from cnntricks.data import imagefolder, shapes, torchvision_sets


def data_cfg(root: Path, **values):
    return OmegaConf.structured(DataConfig(root=str(root), **values))


def small_shapes(root: Path, **values):
    return load_splits(data_cfg(root, **{"name": "shapes", "n_train": 60, "n_val": 20, "n_test": 20, **values}))


def rows(split: Split) -> set[bytes]:
    return {image.numpy().tobytes() for image in split.images}


# --- shapes --------------------------------------------------------------------------------------

def test_shapes_splits_are_balanced_uint8_images(tmp_path):
    splits = small_shapes(tmp_path)
    assert splits.classes == shapes.CLASSES and len(set(splits.classes)) == 10
    for split, n in zip(splits[:3], (60, 20, 20)):
        assert split.images.shape == (n, 3, 32, 32) and split.images.dtype == torch.uint8
        assert split.images.is_contiguous() and split.images.device.type == "cpu"
        assert split.labels.dtype == torch.int64
        assert torch.bincount(split.labels, minlength=10).tolist() == [n // 10] * 10
    images = splits.train.images.float()
    assert images.std() > 20 and images.min() < 30 and images.max() > 225  # real contrast, full range
    assert splits.train.images.float().mean((0, 2, 3)).std() < 40  # no channel is left out


def test_shapes_are_deterministic_per_seed(tmp_path):
    a, b = small_shapes(tmp_path / "a"), small_shapes(tmp_path / "b")
    for x, y in zip(a[:3], b[:3]):
        assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)
    other = small_shapes(tmp_path / "c", seed=1)
    assert not rows(other.train) & rows(a.train)


def test_shapes_splits_are_disjoint(tmp_path):
    splits = small_shapes(tmp_path)
    train, val, test = map(rows, splits[:3])
    assert len(train) == 60 and not train & val and not train & test and not val & test


def test_shorter_shapes_split_is_a_prefix_and_sizes_follow_image_size():
    full = shapes.generate(1100, size=24, seed=3)
    short = shapes.generate(1010, size=24, seed=3)
    assert full.images.shape == (1100, 3, 24, 24)
    assert torch.equal(full.images[:1010], short.images) and torch.equal(full.labels[:1010], short.labels)


def test_shapes_cache_is_reused(tmp_path, monkeypatch):
    first = small_shapes(tmp_path)
    files = sorted((tmp_path / "shapes").glob("*.pt"))
    assert len(files) == 3 and not list((tmp_path / "shapes").glob(".*"))  # no temporary file left

    def no_generation(*args, **kwargs):
        raise AssertionError("generated again instead of loading the cache")

    monkeypatch.setattr(shapes, "generate", no_generation)
    second = small_shapes(tmp_path)
    assert torch.equal(first.train.images, second.train.images)
    with pytest.raises(AssertionError, match="generated again"):
        small_shapes(tmp_path, n_train=70)  # other parameters, other cache file


def test_shapes_rejects_bad_sizes(tmp_path):
    with pytest.raises(DataError, match="data.n_train=0"):
        small_shapes(tmp_path, n_train=0)


def test_unknown_data_set_name(tmp_path):
    with pytest.raises(DataError, match="data.name=nope: must be one of shapes, cifar10"):
        load_splits(data_cfg(tmp_path, name="nope"))


# --- imagefolder ---------------------------------------------------------------------------------

COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def write_images(folder: Path, per_class: int, size=(20, 14)) -> None:
    """Solid-colour images, PNG and JPEG alternately, plus a grey, a palette and a stray file."""
    for name, colour in COLOURS.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            image = Image.new("RGB", size, colour)
            image.save(folder / name / (f"{i}.png" if i % 2 else f"{i}.jpg"), quality=95)
    Image.new("L", size, 128).convert("RGB").convert("P").save(folder / "blue" / "palette.png")
    (folder / "red" / "notes.txt").write_text("not an image")


def folder_cfg(root: Path, **values):
    return data_cfg(root, **{"name": "imagefolder", "image_size": 16, **values})


def test_imagefolder_train_and_val_folders(tmp_path, caplog):
    write_images(tmp_path / "train", 4)
    write_images(tmp_path / "val", 2)
    splits = load_splits(folder_cfg(tmp_path))
    assert splits.classes == ["blue", "green", "red"]
    assert len(splits.train.labels) == 13 and len(splits.val.labels) == 7  # 3 x 4 (+1 palette image), 3 x 2 (+1)
    assert splits.train.images.shape[1:] == (3, 16, 16) and splits.train.images.dtype == torch.uint8
    assert torch.equal(splits.test.images, splits.val.images)  # no test/: the test split is val
    assert "test split is the validation split" in caplog.text
    # Colours survive decoding (JPEG within a few levels) and label i is folder classes[i].
    for k, colour in enumerate(COLOURS.values()):
        pixels = splits.train.images[splits.train.labels == k].float().mean((2, 3))
        if k != 0:  # blue also holds the grey palette image
            assert (pixels - torch.tensor(colour)).abs().max() < 6


def test_imagefolder_single_folder_split_by_val_fraction(tmp_path):
    write_images(tmp_path, 10)
    cfg = folder_cfg(tmp_path, val_fraction=0.2)
    splits = load_splits(cfg)
    assert (len(splits.train.labels), len(splits.val.labels)) == (25, 6)  # 31 images, 20 % of them for val
    again = load_splits(cfg)
    assert torch.equal(splits.val.labels, again.val.labels) and torch.equal(splits.train.images, again.train.images)
    smaller = load_splits(folder_cfg(tmp_path, n_train=5, n_val=4, n_test=2))
    assert (len(smaller.train.labels), len(smaller.val.labels), len(smaller.test.labels)) == (5, 4, 2)


def test_imagefolder_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    write_images(tmp_path / "train", 3)
    write_images(tmp_path / "test", 1)
    first = load_splits(folder_cfg(tmp_path))
    assert len(first.test.labels) == 4 and len(list((tmp_path / imagefolder.CACHE_DIR).glob("*.pt"))) == 1
    calls = []
    real = imagefolder._decode_all
    monkeypatch.setattr(imagefolder, "_decode_all", lambda *a: calls.append(a) or real(*a))
    second = load_splits(folder_cfg(tmp_path))
    assert not calls and torch.equal(first.train.images, second.train.images)
    changed = tmp_path / "train" / "red" / "0.jpg"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    load_splits(folder_cfg(tmp_path))
    assert len(calls) == 1
    load_splits(folder_cfg(tmp_path, image_size=8))
    assert len(calls) == 2


def test_imagefolder_parallel_decoding_matches_serial(tmp_path):
    write_images(tmp_path / "train", 6)
    files = [str(p) for p in sorted((tmp_path / "train").rglob("*.*")) if p.suffix != ".txt"]
    assert torch.equal(imagefolder._decode_all(files, 12, workers=2), imagefolder._decode_all(files, 12, workers=1))


def test_imagefolder_keeps_aspect_ratio_by_centre_crop(tmp_path):
    image = np.zeros((10, 40, 3), np.uint8)  # H=10, W=40: left and right quarters black, middle white
    image[:, 10:30] = 255
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(image).save(tmp_path / name / "x.png")
        Image.fromarray(image).save(tmp_path / name / "y.png")
    splits = load_splits(folder_cfg(tmp_path, image_size=10, val_fraction=0.5))
    assert splits.train.images.shape[1:] == (3, 10, 10)
    assert splits.train.images.min() == 255  # the centre 10x10 of a 10x40 image is all white


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "is not a directory"),
        (lambda root: write_images(root / "val", 1), "has val/ but no train/ folder"),
        (lambda root: (root / "train" / "only").mkdir(parents=True), "need at least 2"),
        (lambda root: (write_images(root / "train", 1), (root / "train" / "empty").mkdir()), "empty has no images"),
        (lambda root: (write_images(root / "train", 1), write_images(root / "val" / "x", 1)), "is not a class of"),
    ],
)
def test_imagefolder_errors(tmp_path, make, message):
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(DataError, match=message):
        load_splits(folder_cfg(root))


# --- torchvision sets ----------------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    """An MNIST idx file: zero, zero, type 0x08 (uint8), number of dimensions, big-endian sizes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_like_sets_from_local_idx_files(tmp_path, monkeypatch, name, folder):
    rng = np.random.default_rng(0)
    raw = tmp_path / name / folder / "raw"
    train_images = rng.integers(0, 256, (30, 28, 28))
    for prefix, images in (("train", train_images), ("t10k", rng.integers(0, 256, (10, 28, 28)))):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(len(images)) % 10)
    splits = load_splits(data_cfg(tmp_path, name=name, n_val=5, image_size=28))
    assert (len(splits.train.labels), len(splits.val.labels), len(splits.test.labels)) == (25, 5, 10)
    assert splits.train.images.shape == (25, 3, 28, 28) and splits.train.images.dtype == torch.uint8
    assert torch.equal(splits.train.images[:, 0], splits.train.images[:, 2])  # grey repeated
    assert len(splits.classes) == 10
    # The train and val splits partition the official train split, image for image with their labels.
    official = {img.tobytes(): i % 10 for i, img in enumerate(train_images.astype(np.uint8))}
    for split in (splits.train, splits.val):
        assert [official[img[0].numpy().tobytes()] for img in split.images] == split.labels.tolist()

    monkeypatch.setattr(torchvision_sets, "_open", lambda *a: pytest.fail("parsed again instead of the cache"))
    smaller = load_splits(data_cfg(tmp_path, name=name, n_val=5, image_size=28, n_train=10, n_test=3))
    assert torch.equal(smaller.val.images, splits.val.images) and len(smaller.test.labels) == 3
    with pytest.raises(DataError, match="data.n_val \\+ data.n_train = 35 > 30"):
        load_splits(data_cfg(tmp_path, name=name, n_val=5, image_size=28, n_train=30))


def test_mnist_is_resized_to_image_size(tmp_path):
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    for prefix, n in (("train", 12), ("t10k", 4)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", np.full((n, 28, 28), 200))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    splits = load_splits(data_cfg(tmp_path, name="mnist", n_val=2))
    assert splits.train.images.shape == (10, 3, 32, 32) and (splits.train.images == 200).all()


def test_offline_cifar10_says_where_to_put_the_files(tmp_path):
    with pytest.raises(DataError) as error:
        load_splits(data_cfg(tmp_path / "data", name="cifar10"))
    message = str(error.value)
    assert "\n" not in message
    assert f"files not found under {tmp_path / 'data' / 'cifar10'}" in message
    assert "cifar-10-batches-py/" in message and "data.download=true" in message
