"""Class imbalance (the text's "Miscellaneous" section): epoch samplers and long-tailed splits.

* `sampler` config group: which training indices one epoch visits. `none` shuffles the split;
  `oversample` repeats the images of the small classes until every class has as many as the largest;
  `undersample` draws, each epoch afresh, as many images of every class as the smallest has.
* `make_imbalanced` turns any (balanced) training split into a long-tailed one, so the effect of
  imbalance and of its remedies can be measured on any data set (`data.imbalance.ratio/profile`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from cnntricks.checks import check_choice

__all__ = ["Sampler", "Shuffle", "OverSample", "UnderSample", "class_indices", "make_imbalanced"]

PROFILES = ("exp", "step")


def class_indices(labels: Tensor) -> list[Tensor]:
    """Indices of each class present in `labels` (CPU int64), in ascending class order."""
    labels = labels.cpu()
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    return [group for group in torch.split(order, counts.tolist()) if len(group)]


def _draw(indices: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """`n` of `indices`: whole copies first, the remainder without replacement, so every image of an
    oversampled class appears at least floor(n / len) times and a subsample has no duplicates."""
    copies, rest = divmod(n, len(indices))
    pick = torch.randperm(len(indices), generator=generator)[:rest]
    return torch.cat([indices.repeat(copies), indices[pick]])


class Sampler:
    """Base class: `epoch_indices(labels, generator)` returns the indices one epoch visits, shuffled."""

    def epoch_indices(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        raise NotImplementedError


class Shuffle(Sampler):
    """`none`: every training image once per epoch, in a random order."""

    def epoch_indices(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        return torch.randperm(len(labels), generator=generator).to(labels.device)


class _Balanced(Sampler):
    """Every class drawn the same number of times per epoch (`_per_class` of the class sizes)."""

    def _per_class(self, sizes: list[int]) -> int:
        raise NotImplementedError

    def epoch_indices(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        groups = class_indices(labels)
        n = self._per_class([len(group) for group in groups])
        chosen = torch.cat([_draw(group, n, generator) for group in groups])
        return chosen[torch.randperm(len(chosen), generator=generator)].to(labels.device)


class OverSample(_Balanced):
    """`oversample`: the small classes repeated up to the size of the largest (no image dropped)."""

    def _per_class(self, sizes: list[int]) -> int:
        return max(sizes)


class UnderSample(_Balanced):
    """`undersample`: every class cut to the size of the smallest, a fresh subset each epoch."""

    def _per_class(self, sizes: list[int]) -> int:
        return min(sizes)


def make_imbalanced(split: Any, ratio: float, profile: str, seed: int) -> Any:
    """A long-tailed copy of `split` (anything with `.images` and `.labels`, rebuilt by its type).

    Class k of K (in label order) keeps n_k images, n_0 = n_max being the size of the smallest class
    of `split` (so every class can supply its share) and n_{K-1} = n_max / `ratio`:
    * `exp`: n_k = n_max * ratio^(-k / (K - 1)), sizes falling geometrically;
    * `step`: the first ceil(K / 2) classes keep n_max, the others n_max / ratio.
    The kept images are a random subset (seeded by `seed`) in their original order. ratio 1 returns
    `split` unchanged.
    """
    if not ratio >= 1:
        raise ValueError(f"ratio={ratio}: must be >= 1 (n_max / n_min)")
    check_choice("profile", profile, PROFILES)
    groups = class_indices(split.labels)
    if ratio == 1 or len(groups) < 2:
        return split
    n_max, last = min(len(group) for group in groups), len(groups) - 1
    if profile == "exp":
        fractions = [ratio ** (-k / last) for k in range(len(groups))]
    else:
        fractions = [1.0 if k < (len(groups) + 1) // 2 else 1 / ratio for k in range(len(groups))]
    generator = torch.Generator().manual_seed(seed)
    kept = [
        group[torch.randperm(len(group), generator=generator)[: max(1, round(n_max * fraction))]]
        for group, fraction in zip(groups, fractions)
    ]
    index = torch.cat(kept).sort().values  # a CPU index also selects from device tensors
    return type(split)(split.images[index], split.labels[index])
