"""Tricks seen through real (small) training runs: what they do to the curves."""

from __future__ import annotations

import json

import pytest

from cnntricks.train import train


def last_epoch(run_dir):
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


def test_imbalanced_training_split_logs_per_class_and_balanced_accuracy(make_cfg, tmp_path):
    cfg = make_cfg("data.imbalance.ratio=10", "sampler=oversample", "aug.minority_only=true", "+aug=[crop]")
    summary = train(cfg, run_dir=tmp_path / "run")
    metrics = last_epoch(tmp_path / "run")
    assert 0.0 <= metrics["acc/val_balanced"] <= 1.0
    assert sorted(k for k in metrics if k.startswith("acc_class/")) == sorted(f"acc_class/{c}" for c in summary["classes"])
    assert "acc/test_balanced" in summary["best"] and "acc/test_balanced" in summary["final"]


def test_balanced_training_split_keeps_the_epoch_record_short(make_cfg, tmp_path):
    train(make_cfg("trainer.epochs=1"), run_dir=tmp_path / "run")
    assert not any(k.startswith("acc_class/") for k in last_epoch(tmp_path / "run"))


@pytest.mark.slow
def test_flip_and_crop_shrink_the_train_val_gap(make_cfg, tmp_path):
    # Small enough to overfit within a few epochs; the same seed, data and model for both runs.
    size = ("data.n_train=1000", "data.n_val=500", "data.n_test=100", "model.width=16",
            "trainer.epochs=12", "trainer.batch_size=64", "optim.lr=0.02", "trainer.threads=2")
    plain = train(make_cfg(*size), run_dir=tmp_path / "plain")
    augmented = train(make_cfg(*size, "+aug=[flip,crop]"), run_dir=tmp_path / "augmented")
    assert plain["final"]["gap"] > 0.05  # the plain run overfits visibly
    assert augmented["final"]["gap"] < plain["final"]["gap"] - 0.02
