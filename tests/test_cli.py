"""The real `cnntricks` command: help, info, errors, end-to-end training, sweeps, eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import tiny_cli_args

EPOCH_TAGS = {"loss/train", "loss/val", "acc/train", "acc/val", "gap", "lr", "time/epoch", "time/images_per_s"}


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("outputs/**/summary.json"))


def test_top_level_help_lists_subcommands(run_cli):
    out = run_cli("--help").stdout
    for command in ("train", "eval", "show-aug"):
        assert command in out


def test_train_help_lists_every_group_and_option(run_cli):
    out = run_cli("train", "--help").stdout
    for group in ("data", "model", "optim", "sched", "trainer", "act", "init", "preprocess", "sampler", "aug", "reg", "experiment"):
        assert f"{group}:" in out
    assert "shapes" in out and "resnet18" in out and "plateau" in out


def test_info_searchpath_shows_the_packaged_configs(run_cli):
    assert "pkg://cnntricks.conf" in run_cli("train", "--info", "searchpath").stdout


def test_cfg_job_prints_the_composed_config(run_cli):
    out = run_cli("train", "--cfg", "job", "act=relu").stdout
    assert "trainer:" in out and "epochs:" in out


@pytest.mark.parametrize("args,needle", [
    (["act=nope"], "act=nope: unknown option"),
    (["trainer.epochs=abc"], "trainer.epochs"),
    (["-m", "act=relu,nope"], "act=nope"),
])
def test_bad_input_exits_non_zero_with_one_line_and_writes_nothing(run_cli, tmp_path, args, needle):
    result = run_cli("train", *args, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnntricks: error:") and needle in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_the_machine_lacks_is_one_line_before_any_run_directory(run_cli, tmp_path):
    result = run_cli("train", "trainer.device=cuda", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "cnntricks: error: trainer.device=cuda: no CUDA device is available; accepted here: auto, cpu"
    assert not (tmp_path / "outputs").exists()


def test_unknown_subcommand(run_cli):
    result = run_cli("trian", check=False)
    assert result.returncode == 2 and "accepted: train, eval" in result.stderr


@pytest.mark.slow
def test_train_end_to_end_writes_the_run_directory(run_cli, tmp_path, data_root):
    run_cli("train", *tiny_cli_args(data_root), "act=relu")
    [run] = run_dirs(tmp_path)
    assert run.parent == tmp_path / "outputs" / "runs"
    assert "act=relu" in run.name  # runs are recognisable by their overrides
    for name in ("config.yaml", "metrics.jsonl", "batches.csv", "summary.json", "checkpoints/last.pt", "checkpoints/best.pt", ".hydra/config.yaml"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 2
    assert 0.0 <= summary["best"]["acc/test"] <= 1.0 and "acc/test" in summary["final"]
    assert summary["device"] == "cpu" and summary["wall_time_s"] > 0
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in epochs] == [1, 2]
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = set(events.Tags()["scalars"])
    assert EPOCH_TAGS | {"batch/loss"} <= tags
    assert len(events.Scalars("batch/loss")) == sum(1 for _ in (run / "batches.csv").open()) - 1
    assert len(events.Scalars("acc/val")) == 2
    assert "images/train_batch" in events.Tags()["images"]
    assert {"hparam/acc_val", "hparam/acc_test"} <= tags

    result = run_cli("eval", str(run))
    report = json.loads((run / "eval_test.json").read_text())
    assert report["n"] == 100 and len(report["confusion_matrix"]) == 10
    assert sum(map(sum, report["confusion_matrix"])) == 100
    assert report["accuracy"] == pytest.approx(summary["best"]["acc/test"])
    assert "test accuracy" in result.stdout


@pytest.mark.slow
def test_multirun_sweep_makes_one_named_run_per_job(run_cli, tmp_path, data_root):
    run_cli("train", "-m", *tiny_cli_args(data_root), "trainer.epochs=1", "optim.lr=0.1,0.05")
    runs = run_dirs(tmp_path)
    assert len(runs) == 2
    assert all(r.parent.parent == tmp_path / "outputs" / "multirun" for r in runs)
    assert sorted(r.name.split("_", 1)[0] for r in runs) == ["0", "1"]
    assert sorted("optim.lr=0.05" in r.name for r in runs) == [False, True]
    for run in runs:
        assert json.loads((run / "summary.json").read_text())["status"] == "completed"
