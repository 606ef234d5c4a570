"""Batched augmentation (cnntricks.augment) vs torchvision's per-image transforms in a DataLoader.

    python scripts/bench_augment.py [--images 10000] [--batch-size 128] [--threads 1] [--workers 0] [--repeats 3]

Both sides apply the same ops (horizontal flip, random crop with 4 reflected pixels of padding,
colour jitter 0.4/0.4/0.4/0.1) to the same random CIFAR-sized uint8 images on the CPU and deliver
uint8 batches of the same size. The batched side transforms whole batches with per-image random
parameters; the per-image side is `torchvision.transforms.v2.Compose` called once per image by a
DataLoader. By default each side gets one core: `--threads 1` torch thread, and the DataLoader in
the main process (`--workers 0`, the trainer's `data.workers` default); `--workers N` gives the
per-image side N worker processes instead. Each side keeps its best of `--repeats` passes, so a
noisy neighbour hurts both alike.
Last line: `ratio: <batched / per-image>`.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from cnntricks.augment import ColorJitter, Crop, Flip

JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}


class PerImage(Dataset):
    """The images one at a time through a torchvision v2 pipeline, as a Dataset would serve them."""

    def __init__(self, images: torch.Tensor, transform: Callable) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.images[index])


def best_rate(run: Callable[[], int], repeats: int) -> float:
    """Images per second of the fastest of `repeats` calls of `run` (which returns the image count)."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        best = max(best, count / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the batched side")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the per-image side")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8)

    batched = torch.nn.Sequential(Flip(), Crop(padding=4, padding_mode="reflect"), ColorJitter(**JITTER))

    def run_batched() -> int:
        for batch in images.split(args.batch_size):
            batched(batch)
        return len(images)

    per_image = v2.Compose(
        [v2.RandomHorizontalFlip(), v2.RandomCrop(32, padding=4, padding_mode="reflect"), v2.ColorJitter(**JITTER)]
    )
    loader = DataLoader(
        PerImage(images, per_image),
        batch_size=args.batch_size,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,  # worker start-up is not augmentation time
    )

    def run_per_image() -> int:
        return sum(len(batch) for batch in loader)

    with torch.no_grad():
        batched_rate = best_rate(run_batched, args.repeats)
        per_image_rate = best_rate(run_per_image, args.repeats)
    print(f"images: {args.images} x 3x32x32 uint8, batch size {args.batch_size}, torch threads {args.threads}")
    print(f"batched (cnntricks.augment):          {batched_rate:10.0f} images/s")
    print(f"per-image (torchvision v2, {args.workers} workers): {per_image_rate:10.0f} images/s")
    print(f"ratio: {batched_rate / per_image_rate:.1f}")


if __name__ == "__main__":
    main()
