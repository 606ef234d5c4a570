"""`train(cfg)` called directly: outputs, determinism, resume, early stop, divergence."""

from __future__ import annotations

import json

import pytest
import torch

import cnntricks.train as training
from cnntricks.train import train


def epochs_of(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def comparable(metrics):
    return [{k: v for k, v in m.items() if not k.startswith("time/")} for m in metrics]


def test_train_returns_the_summary_and_logs_every_epoch(make_cfg, tmp_path):
    summary = train(make_cfg(), run_dir=tmp_path / "run")
    assert summary == json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["options"]["model"] == "vgg" and summary["options"]["aug"] == "none"
    metrics = epochs_of(tmp_path / "run")
    assert len(metrics) == 2
    for m in metrics:
        assert m["gap"] == pytest.approx(m["acc/train"] - m["acc/val"])
        assert m["lr"] == pytest.approx(0.1)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert state["epoch"] == 2 and len(state["classes"]) == 10
    # The fitted preprocessing travels inside the model's state.
    assert any(key.startswith("preprocess.") for key in state["model"])


def test_same_seed_same_metrics_and_other_seed_differs(make_cfg, tmp_path):
    train(make_cfg("seed=3"), run_dir=tmp_path / "a")
    train(make_cfg("seed=3"), run_dir=tmp_path / "b")
    train(make_cfg("seed=4"), run_dir=tmp_path / "c")
    a, b, c = (comparable(epochs_of(tmp_path / n)) for n in "abc")
    assert a == b
    assert a != c


def test_resume_after_interruption_gives_the_uninterrupted_metrics(make_cfg, tmp_path, monkeypatch):
    overrides = ("trainer.epochs=3", "+aug=[flip]", "+reg=[dropout]")
    straight = train(make_cfg(*overrides), run_dir=tmp_path / "straight")

    calls = {"n": 0}
    evaluate = training.evaluate

    def interrupt_in_epoch_2(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # two evaluations per epoch: the first of epoch 2
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg(*overrides), run_dir=tmp_path / "broken")
    assert json.loads((tmp_path / "broken" / "summary.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(training, "evaluate", evaluate)

    resumed = train(make_cfg(*overrides, f"trainer.resume={tmp_path / 'broken'}"), run_dir=tmp_path / "new")
    assert resumed["run_dir"] == str(tmp_path / "broken")  # continued in its own directory
    assert comparable(epochs_of(tmp_path / "broken")) == comparable(epochs_of(tmp_path / "straight"))
    assert resumed["best"] == straight["best"] and resumed["final"] == straight["final"]


def test_resume_auto_finds_the_unfinished_run_of_the_same_config(make_cfg, tmp_path):
    outputs = tmp_path / "outputs" / "runs"
    train(make_cfg("trainer.epochs=1"), run_dir=outputs / "first")
    # What a killed process leaves behind: a checkpoint and a summary still saying "running".
    (outputs / "first" / "summary.json").write_text(json.dumps({"status": "running"}))
    other = train(make_cfg("trainer.epochs=1", "seed=9"), run_dir=outputs / "other")
    assert other["status"] == "completed"
    summary = train(make_cfg("trainer.epochs=2", "trainer.resume=auto"), run_dir=outputs / "second")
    assert summary["run_dir"] == str(outputs / "first") and summary["epochs"] == 2
    assert [m["epoch"] for m in epochs_of(outputs / "first")] == [1, 2]


def test_plateau_halves_the_lr_and_early_stop_at_min_lr(make_cfg, tmp_path):
    # A tiny LR (and no batch-norm statistics drifting) never improves the validation loss by the
    # scheduler's threshold: the plateau scheduler must halve the LR down to its floor, then stop.
    cfg = make_cfg("trainer.epochs=8", "optim.lr=1e-5", "sched.patience=0", "sched.min_lr=2.5e-6", "model.batch_norm=false",
                   "trainer.stop_at_min_lr=true", "data.n_train=64", "data.n_val=20", "data.n_test=20")
    summary = train(cfg, run_dir=tmp_path / "run")
    lrs = [m["lr"] for m in epochs_of(tmp_path / "run")]
    # Epoch 1 sets the first best loss; each later epoch stalls and halves the LR until the floor.
    assert lrs == pytest.approx([1e-5, 1e-5, 5e-6, 2.5e-6])
    assert summary["epochs"] == 4 and summary["status"] == "completed"  # stalled at the floor: stop


def test_divergence_is_reported_not_raised(make_cfg, tmp_path):
    summary = train(make_cfg("optim.lr=1e30", "preprocess=none", "model.batch_norm=false", "trainer.epochs=3"), run_dir=tmp_path / "run")
    assert summary["status"] == "diverged"
