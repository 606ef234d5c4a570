"""`cnntricks eval RUN_DIR|CHECKPOINT [data overrides]`: test-split metrics of a trained model.

The checkpoint holds the resolved config, the class names and the fitted preprocessing (inside the
model), so evaluation needs nothing else. Data overrides (`data.n_test=500`, or another data set
with the same classes: `data=imagefolder data.root=DIR`) change only what is evaluated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from cnntricks import checkpoint as ckpt
from cnntricks.config import ConfigError


def data_config(stored: DictConfig, overrides: list[str]) -> DictConfig:
    """The stored data config with `data=NAME` / `data.KEY=VALUE` overrides applied and type-checked."""
    from cnntricks.cli import CONFIG_MODULE, explain_composition_error
    from cnntricks.config import DataConfig

    bad = [o for o in overrides if not o.startswith(("data.", "data="))]
    if bad:
        raise ConfigError(f"{bad[0]}: eval takes only data overrides (data=NAME, data.KEY=VALUE)")
    chosen = [o for o in overrides if o.startswith("data=")]
    keys = [o[len("data."):] for o in overrides if o.startswith("data.")]
    base = stored.data
    if chosen:  # another data option: its YAML replaces the stored data config
        from hydra import compose, initialize_config_module
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            try:
                base = compose("config", overrides=chosen).data
            except Exception as error:
                raise ConfigError(explain_composition_error(error)) from None
        GlobalHydra.instance().clear()
    try:
        return OmegaConf.merge(OmegaConf.structured(DataConfig), base, OmegaConf.from_dotlist(keys))
    except Exception as error:
        raise ConfigError(f"data: {str(error).splitlines()[0]}") from None


def evaluate_checkpoint(path: str | Path, overrides: list[str] = (), split: str = "test",
                        device: str = "auto") -> dict[str, Any]:
    from cnntricks.data import load_splits
    from cnntricks.data.loader import Batches
    from cnntricks.config import pick_device
    from cnntricks.train import build_model, evaluate

    try:
        file = ckpt.find(path, "best.pt")
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from None
    torch_device = pick_device(device)
    state = ckpt.load(file, torch_device)
    cfg = OmegaConf.create(state["config"])
    data_cfg = data_config(cfg, list(overrides))
    splits = load_splits(data_cfg)
    classes = list(state["classes"])
    if list(splits.classes) != classes:
        raise ConfigError(f"data={data_cfg.name}: its classes {list(splits.classes)} differ from the model's {classes}")
    model = build_model(cfg, len(classes), tuple(state["image_shape"]))
    model.load_state_dict(state["model"])
    model.to(torch_device)
    data = getattr(splits, split)
    batches = Batches(data.images, data.labels, cfg.trainer.eval_batch_size, torch_device)
    metrics = evaluate(model, batches, len(classes), lambda: torch.autocast(torch_device.type, enabled=False))
    return {
        "checkpoint": str(file), "epoch": state["epoch"], "split": split, "data": data_cfg.name,
        "n": len(data.labels), "accuracy": metrics["acc"], "loss": metrics["loss"],
        "balanced_accuracy": metrics["balanced_acc"], "classes": classes,
        "per_class_accuracy": dict(zip(classes, metrics["per_class_acc"])),
        "confusion_matrix": metrics["confusion"],
    }


def main(argv: list[str]) -> None:
    from cnntricks.cli import error_exit

    parser = argparse.ArgumentParser(prog="cnntricks eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a run directory (uses checkpoints/best.pt) or a checkpoint file")
    parser.add_argument("overrides", nargs="*", help="data overrides, e.g. data.n_test=500")
    parser.add_argument("--split", choices=("test", "val", "train"), default="test")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    parser.add_argument("--out", type=Path, help="where to write the JSON (default: RUN_DIR/eval_<split>.json)")
    args = parser.parse_args(argv)
    try:
        result = evaluate_checkpoint(args.path, args.overrides, args.split, args.device)
    except ConfigError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        error_exit(str(error))
    out = args.out or ckpt.run_dir_of(Path(result["checkpoint"])) / f"eval_{args.split}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.split} accuracy {result['accuracy']:.4f} (balanced {result['balanced_accuracy']:.4f}, "
          f"loss {result['loss']:.4f}, n={result['n']}) -> {out}")
    width = max(map(len, result["classes"]))
    for name, acc in result["per_class_accuracy"].items():
        print(f"  {name:<{width}}  {acc:.4f}")
    sys.stdout.flush()
