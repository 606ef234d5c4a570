"""Training throughput of `cnntricks.train` vs a bare PyTorch loop: same model, data, batch size.

    python scripts/bench_trainer.py [--epochs 3] [--repeats 2] [overrides ...]

Both sides train the default model on the same in-memory training split; the trainer's figure is
its own `time/images_per_s` (training phase of an epoch, all its bookkeeping included), the bare
loop's is images over wall time of the same work. The sides alternate and each keeps its best
epoch, so a noisy neighbour on the machine hurts both alike. Last line: `ratio: <ours / bare>`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module

from cnntricks.config import build
from cnntricks.train import build_model, load_data, seed_everything, train


def bare_epochs(cfg, epochs: int) -> list[float]:
    """Images/s of each epoch of the plainest loop that does the same training."""
    generator = seed_everything(cfg.seed)
    splits = load_data(cfg)
    images, labels = splits.train.images, splits.train.labels
    model = build_model(cfg, len(splits.classes), tuple(images.shape[1:]))
    model.preprocess.fit(images)
    optimizer = build(cfg.optim, "optim", params=model.parameters())
    batch = cfg.trainer.batch_size
    speeds = []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(labels), generator=generator)
        stop = len(order) - len(order) % batch
        for i in range(0, stop, batch):
            index = order[i:i + batch]
            loss = F.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        speeds.append(stop / (time.perf_counter() - start))
    return speeds


def trainer_epochs(cfg) -> list[float]:
    with tempfile.TemporaryDirectory() as run_dir:
        train(cfg, run_dir=run_dir)
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["time/images_per_s"] for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both sides (e.g. model.width=32)")
    args = parser.parse_args()
    with initialize_config_module(config_module="cnntricks.conf", version_base="1.3"):
        cfg = compose("config", overrides=["trainer.progress=false", f"trainer.epochs={args.epochs}",
                                           "data.n_val=500", "data.n_test=100", *args.overrides])
    print(f"model={cfg.model._target_} width={cfg.model.width} batch={cfg.trainer.batch_size} "
          f"n_train={cfg.data.n_train} threads={torch.get_num_threads()}")
    ours, bare = [], []
    for repeat in range(args.repeats):
        ours += trainer_epochs(cfg)
        bare += bare_epochs(cfg, args.epochs)
        print(f"repeat {repeat + 1}: cnntricks {max(ours):.0f} img/s, bare loop {max(bare):.0f} img/s")
    print(f"cnntricks trainer: {max(ours):.0f} images/s (best epoch)")
    print(f"bare PyTorch loop: {max(bare):.0f} images/s (best epoch)")
    print(f"ratio: {max(ours) / max(bare):.3f}")


if __name__ == "__main__":
    main()
