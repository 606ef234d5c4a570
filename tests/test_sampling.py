"""Class imbalance: epoch samplers and long-tailed splits."""

from __future__ import annotations

import pytest
import torch

from cnntricks.data import Split
from cnntricks.config import build
from cnntricks.sampling import OverSample, Shuffle, UnderSample, make_imbalanced

LABELS = torch.tensor([0] * 50 + [1] * 20 + [2] * 7)


def _epoch(sampler, seed: int = 0) -> torch.Tensor:
    return sampler.epoch_indices(LABELS, torch.Generator().manual_seed(seed))


def test_shuffle_visits_every_image_once():
    indices = _epoch(Shuffle())
    assert torch.equal(indices.sort().values, torch.arange(len(LABELS)))
    assert not torch.equal(indices, torch.arange(len(LABELS)))


def test_oversample_balances_by_repeating_every_small_class_image_evenly():
    indices = _epoch(OverSample())
    assert torch.bincount(LABELS[indices]).tolist() == [50, 50, 50]
    repeats = torch.bincount(indices, minlength=len(LABELS))
    assert repeats[:50].eq(1).all()  # the largest class once each
    assert set(repeats[50:70].tolist()) <= {2, 3}  # 50 / 20: every image 2 or 3 times
    assert set(repeats[70:].tolist()) <= {7, 8}  # 50 / 7


def test_undersample_balances_with_a_fresh_subset_each_epoch():
    first, second = _epoch(UnderSample(), seed=0), _epoch(UnderSample(), seed=1)
    for indices in (first, second):
        assert torch.bincount(LABELS[indices]).tolist() == [7, 7, 7]
        assert len(indices.unique()) == len(indices)  # no duplicates
    assert not torch.equal(first.sort().values, second.sort().values)


def test_samplers_are_reproducible_from_the_generator():
    for sampler in (Shuffle(), OverSample(), UnderSample()):
        assert torch.equal(_epoch(sampler, seed=5), _epoch(sampler, seed=5))


def _balanced_split(per_class: int = 100, classes: int = 10) -> Split:
    labels = torch.arange(classes).repeat(per_class)
    # The image encodes its own index, so the image/label pairing can be checked after selection.
    images = torch.arange(len(labels)).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).to(torch.int64)
    return Split(images, labels)


def test_exp_profile_falls_geometrically_from_n_max_to_n_max_over_ratio():
    split = _balanced_split()
    tail = make_imbalanced(split, ratio=10.0, profile="exp", seed=0)
    expected = [round(100 * 10 ** (-k / 9)) for k in range(10)]
    assert torch.bincount(tail.labels).tolist() == expected
    assert expected[0] == 100 and expected[-1] == 10
    assert torch.equal(split.labels[tail.images[:, 0, 0, 0]], tail.labels)  # images follow their labels
    assert isinstance(tail, Split)


def test_step_profile_halves_the_classes():
    tail = make_imbalanced(_balanced_split(), ratio=20.0, profile="step", seed=0)
    assert torch.bincount(tail.labels).tolist() == [100] * 5 + [5] * 5


def test_make_imbalanced_is_seeded_and_ratio_one_is_unchanged():
    split = _balanced_split()
    assert make_imbalanced(split, 1.0, "exp", 0) is split
    first, again = make_imbalanced(split, 5.0, "exp", 3), make_imbalanced(split, 5.0, "exp", 3)
    assert torch.equal(first.images, again.images)
    assert not torch.equal(first.images, make_imbalanced(split, 5.0, "exp", 4).images)


@pytest.mark.parametrize(
    ("ratio", "profile", "message"),
    [(0.5, "exp", r"ratio=0.5: must be >= 1"), (2.0, "linear", r"profile=linear: accepted values: exp, step")],
)
def test_make_imbalanced_rejects_bad_arguments(ratio, profile, message):
    with pytest.raises(ValueError, match=message):
        make_imbalanced(_balanced_split(), ratio, profile, 0)


@pytest.mark.parametrize("option", ["none", "oversample", "undersample"])
def test_every_config_option_builds(make_cfg, option):
    sampler = build(make_cfg(f"sampler={option}").sampler, "sampler")
    assert len(sampler.epoch_indices(LABELS, torch.Generator().manual_seed(0))) > 0
