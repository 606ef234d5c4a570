"""Mini-batches from in-memory uint8 tensors, without per-sample Python.

The whole split lives as one uint8 tensor (4x smaller than float) on the training device when it
fits, so a batch is one `index_select`: no DataLoader workers, no per-image collate. A split kept
on the CPU for a GPU run is pinned, so its batches copy asynchronously.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor

# Share of the device's free memory the data set may take before it stays on the host.
_DEVICE_SHARE = 0.25

EpochIndices = Callable[[Tensor, torch.Generator], Tensor]


def storage_device(images: Tensor, device: torch.device) -> torch.device:
    """Where a split should live: the training device if it takes little of its free memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return device if images.numel() < _DEVICE_SHARE * free else torch.device("cpu")
    return device


class Batches:
    """Shuffled (or sampler-ordered) mini-batches of one split, on `device`."""

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, device: torch.device,
                 epoch_indices: EpochIndices | None = None, drop_last: bool = False) -> None:
        home = storage_device(images, device)
        self.images = images.to(home)
        self.labels = labels.to(home)
        if home.type == "cpu" and device.type == "cuda":
            self.images, self.labels = self.images.pin_memory(), self.labels.pin_memory()
        self.batch_size = batch_size
        self.device = device
        self.epoch_indices = epoch_indices
        self.drop_last = drop_last and len(labels) > batch_size

    def order(self, generator: torch.Generator) -> Tensor:
        """This epoch's sample order: a shuffle, or the sampler's (over/under-sampled) indices."""
        if self.epoch_indices is None:
            return torch.randperm(len(self.labels), generator=generator)
        return self.epoch_indices(self.labels.cpu(), generator)

    def num_batches(self, n: int | None = None) -> int:
        n = len(self.labels) if n is None else n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batches(self, order: Tensor | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Mini-batches in `order` (None: the split as stored, for evaluation)."""
        n = len(self.labels) if order is None else len(order)
        stop = self.num_batches(n) * self.batch_size
        if order is not None:
            order = order.to(self.images.device)
        for start in range(0, min(stop, n), self.batch_size):
            if order is None:
                x = self.images[start:start + self.batch_size]
                y = self.labels[start:start + self.batch_size]
            else:
                index = order[start:start + self.batch_size]
                x, y = self.images.index_select(0, index), self.labels.index_select(0, index)
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
