"""`train(cfg) -> summary`: the whole training loop, readable top to bottom.

Each epoch: shuffled mini-batches from in-memory uint8 tensors -> augmentation on the device ->
model (preprocessing inside) -> data loss + regularisation penalty -> optimiser step ->
post-step constraints; then validation (with the dead-unit monitor), the LR scheduler on the
validation loss, TensorBoard scalars, `metrics.jsonl` and an atomic checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid
from tqdm import tqdm

from cnntricks import checkpoint as ckpt
from cnntricks.act import create_act
from cnntricks.augment import augment_grid, build_augment
from cnntricks.config import MULTI_GROUPS, TARGET_GROUPS, ConfigError, build, check_config, group_options, pick_device
from cnntricks.data import Splits, load_splits
from cnntricks.data.loader import Batches
from cnntricks.files import atomic_copy, atomic_save, atomic_write_json
from cnntricks.init import apply_init
from cnntricks.monitor import DeadUnitMonitor
from cnntricks.preprocess import build_preprocess
from cnntricks.sampling import make_imbalanced

log = logging.getLogger("cnntricks")

# Config keys that may differ between an interrupted run and the command that resumes it.
_RESUME_FREE_KEYS = ("trainer.resume", "trainer.progress", "trainer.epochs", "trainer.device", "data.root", "data.workers")


def to_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [0, 1]; float images pass unchanged."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


class Classifier(nn.Module):
    """Preprocessing + network: takes uint8 (or [0, 1] float) images, so a checkpoint is self-contained."""

    def __init__(self, preprocess: nn.Module, net: nn.Module, channels_last: bool = False) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.net = net
        self.channels_last = channels_last

    def forward(self, images: Tensor) -> Tensor:
        x = self.preprocess(to_float(images))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)


def build_model(cfg: DictConfig, num_classes: int, image_shape: tuple[int, int, int]) -> Classifier:
    """The configured network with its activation and initialisation, behind its preprocessing."""
    channels, height, _ = image_shape
    net = build(cfg.model, "model", num_classes=num_classes, act=create_act(cfg.act),
                in_channels=channels, image_size=height)
    apply_init(net, cfg.init)
    preprocess = build_preprocess(cfg.preprocess, image_shape)
    return Classifier(preprocess, net)


def seed_everything(seed: int) -> torch.Generator:
    """Seed every RNG; returns the generator that orders the training samples."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def load_data(cfg: DictConfig) -> Splits:
    splits = load_splits(cfg.data)
    imbalance = cfg.data.imbalance
    if imbalance.ratio != 1.0:
        try:
            train_split = make_imbalanced(splits.train, ratio=imbalance.ratio, profile=imbalance.profile, seed=cfg.data.seed)
        except ValueError as error:
            raise ConfigError(f"data.imbalance: {error}") from None
        splits = splits._replace(train=train_split)
    return splits


def option_names(cfg: DictConfig) -> dict[str, str]:
    """The chosen option of every trick family, for run summaries and TensorBoard's HParams tab."""
    from hydra.core.hydra_config import HydraConfig

    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    names = {"data": cfg.data.name}
    for group in TARGET_GROUPS:
        chosen = choices.get(group)
        names[group] = chosen if isinstance(chosen, str) else cfg[group]._target_.rsplit(".", 1)[-1].lower()
    for group in MULTI_GROUPS:
        names[group] = "+".join(group_options(cfg[group])) or "none"
    return names


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, num_classes: int, autocast: Callable) -> dict[str, Any]:
    """Loss, accuracy, per-class and balanced accuracy, confusion matrix (rows: true class)."""
    model.eval()
    device = batches.device
    loss_sum = torch.zeros((), device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
    for x, y in batches.batches():
        with autocast():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        confusion += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes * num_classes)
    confusion = confusion.view(num_classes, num_classes).cpu()
    count = confusion.sum().item()
    per_class = (confusion.diag() / confusion.sum(1).clamp_min(1)).tolist()
    return {
        "loss": loss_sum.item() / count,
        "acc": confusion.diag().sum().item() / count,
        "balanced_acc": sum(per_class) / num_classes,
        "per_class_acc": per_class,
        "confusion": confusion.tolist(),
    }


def _keep_lines(path: Path, keep: Callable[[str], bool]) -> None:
    if path.exists():
        path.write_text("".join(line for line in path.read_text().splitlines(keepends=True) if keep(line)))


def _fingerprint(cfg: DictConfig) -> str:
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in _RESUME_FREE_KEYS:
        section, name = key.split(".")
        container[section].pop(name, None)
    return json.dumps(container, sort_keys=True)


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> Path | None:
    """The checkpoint `trainer.resume` points at: null, a path, or auto (see README)."""
    resume = cfg.trainer.resume
    if resume is None:
        return None
    if resume != "auto":
        try:
            return ckpt.find(resume)
        except FileNotFoundError as error:
            raise ConfigError(f"trainer.resume={resume}: {error}") from None
    own = run_dir / "checkpoints" / "last.pt"
    if own.is_file():
        return own
    # The newest unfinished run of the same configuration under the same outputs tree.
    fingerprint, candidates = _fingerprint(cfg), []
    root = run_dir.parent.parent
    for last in root.glob("**/checkpoints/last.pt"):
        summary = last.parent.parent / "summary.json"
        if summary.is_file() and json.loads(summary.read_text()).get("status") == "completed":
            continue
        if ckpt.load(last).get("fingerprint") == fingerprint:
            candidates.append(last)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Train as `cfg` says; write the run directory; return the summary (also in summary.json)."""
    check_config(cfg)
    started = time.time()
    run_dir = Path(run_dir or Path("outputs/runs") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    tcfg = cfg.trainer
    resume_from = resume_checkpoint(cfg, run_dir)
    if resume_from is not None:
        run_dir = ckpt.run_dir_of(resume_from)  # a resumed run continues in its own directory
        log.info("resuming %s", resume_from)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)

    # --- device and its options ------------------------------------------------------------------
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    device = pick_device(tcfg.device)
    on_cuda = device.type == "cuda"
    ignored = [k for k in ("amp", "compile", "channels_last") if tcfg[k] and not on_cuda]
    if ignored:
        log.warning("trainer.%s ignored on %s (CUDA only)", ", trainer.".join(ignored), device.type)
    if on_cuda:
        torch.backends.cudnn.benchmark = True
    amp_dtype = getattr(torch, tcfg.amp_dtype)
    use_amp = tcfg.amp and on_cuda

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp)

    # --- data, model, optimiser ------------------------------------------------------------------
    generator = seed_everything(cfg.seed)
    splits = load_data(cfg)
    classes, train_split = splits.classes, splits.train
    num_classes, image_shape = len(classes), tuple(train_split.images.shape[1:])
    class_counts = torch.bincount(train_split.labels, minlength=num_classes)
    imbalanced = bool(class_counts.min() < class_counts.max())

    model = build_model(cfg, num_classes, image_shape)
    model.preprocess.fit(train_split.images)
    model.channels_last = tcfg.channels_last and on_cuda
    model.to(device, memory_format=torch.channels_last if model.channels_last else torch.preserve_format)
    # Compiled for the training steps only: evaluation runs eagerly, where the dead-unit hooks attach.
    step_model = torch.compile(model) if tcfg.compile and on_cuda else model

    optimizer = build(cfg.optim, "optim", params=model.parameters())
    scheduler = build(cfg.sched, "sched", optimizer=optimizer)
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    regs = []
    for name, node in group_options(cfg.reg).items():
        reg = build(node, f"reg.{name}")
        try:
            reg.attach(model.net)  # e.g. dropout on a model without the placeholders it sets
        except ValueError as error:
            raise ConfigError(f"reg.{name}: {error}") from None
        regs.append(reg)
    augment = build_augment(cfg.aug, train_split, run_dir=run_dir, cache_dir=Path(cfg.data.root) / ".cache")
    sampler = build(cfg.sampler, "sampler")
    monitor = DeadUnitMonitor(model.net)

    train_batches = Batches(train_split.images, train_split.labels, tcfg.batch_size, device,
                            epoch_indices=sampler.epoch_indices, drop_last=True)
    val_batches = Batches(splits.val.images, splits.val.labels, tcfg.eval_batch_size, device)
    # Accuracy on a fixed subset of the training split, measured like validation accuracy.
    n_train_eval = min(len(train_split.labels), tcfg.train_eval_size or len(splits.val.labels))
    subset = torch.randperm(len(train_split.labels), generator=torch.Generator().manual_seed(cfg.seed))[:n_train_eval]
    train_eval_batches = Batches(train_split.images[subset], train_split.labels[subset], tcfg.eval_batch_size, device)

    # --- state of a resumed run ------------------------------------------------------------------
    start_epoch, best = 0, {"epoch": 0, "acc/val": -1.0, "loss/val": math.inf}
    if resume_from is not None:
        state = ckpt.load(resume_from, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"], generator)
        start_epoch, best = state["epoch"], state["best"]
        # Lines of an epoch after the checkpoint will be written again.
        _keep_lines(run_dir / "metrics.jsonl", lambda line: json.loads(line)["epoch"] <= start_epoch)
        _keep_lines(run_dir / "batches.csv", lambda line: line.startswith("step") or int(line.split(",")[1]) <= start_epoch)

    names = option_names(cfg)
    summary: dict[str, Any] = {"status": "running", "run_dir": str(run_dir), "device": str(device),
                               "options": names, "classes": list(classes), "epochs": start_epoch}
    atomic_write_json(run_dir / "summary.json", summary)
    writer = SummaryWriter(log_dir=str(run_dir))
    log.info("run %s on %s: %s", run_dir, device, ", ".join(f"{k}={v}" for k, v in names.items()))
    if augment is not None and start_epoch == 0:
        writer.add_image("images/augment", augment_grid(augment, train_split.images[:8].to(device), train_split.labels[:8].to(device), 4))

    step = start_epoch * train_batches.num_batches()
    # Linear LR warm-up: a high initial LR (the text's 0.1) can kill ReLUs in the first steps.
    warmup_steps = round(tcfg.warmup_epochs * train_batches.num_batches())
    last_epoch_metrics: dict[str, Any] = {}
    show_progress = tcfg.progress and sys.stderr.isatty()
    try:
        for epoch in range(start_epoch + 1, tcfg.epochs + 1):
            # ---- train ----
            model.train()
            epoch_start = time.perf_counter()
            # The scheduler's LR for this epoch; a warm-up scales it per step, the scheduler only
            # ever sees the unscaled value.
            scheduled = [group["lr"] for group in optimizer.param_groups]
            order = train_batches.order(generator)
            n_batches = train_batches.num_batches(len(order))
            losses = torch.zeros(n_batches, device=device)
            penalty_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            seen = 0
            bar = tqdm(total=n_batches, desc=f"epoch {epoch}/{tcfg.epochs}", leave=False, disable=not show_progress, unit="batch")
            for i, (x, y) in enumerate(train_batches.batches(order)):
                if step < warmup_steps:
                    for group, lr in zip(optimizer.param_groups, scheduled):
                        group["lr"] = lr * (step + 1) / warmup_steps
                if augment is not None:
                    x, y = augment(x, y)
                if step == 0:
                    # What the network sees after augmentation and preprocessing, once per run.
                    with torch.no_grad():
                        seen_by_net = model.preprocess(to_float(x[:32]))
                    writer.add_image("images/train_batch", make_grid(seen_by_net.float().cpu(), nrow=8, normalize=True, scale_each=True))
                with autocast():
                    logits = step_model(x)
                    data_loss = F.cross_entropy(logits, y)
                loss = data_loss
                if regs:
                    penalty = sum(reg.penalty(model.net) for reg in regs)
                    loss = data_loss + penalty
                    penalty_sum += penalty.detach()
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                for reg in regs:
                    reg.after_step(model.net)
                # Kept on the device: no host sync per step (the bar syncs only when shown).
                losses[i] = data_loss.detach()
                correct += (logits.argmax(1) == y).sum()
                seen += len(y)
                step += 1
                if show_progress:
                    bar.update()
                    if i % 10 == 0:
                        elapsed = time.perf_counter() - epoch_start
                        bar.set_postfix(loss=f"{data_loss.item():.3f}", acc=f"{correct.item() / seen:.3f}", img_s=f"{seen / elapsed:.0f}")
            bar.close()
            for group, lr in zip(optimizer.param_groups, scheduled):
                group["lr"] = lr
            train_time = time.perf_counter() - epoch_start
            batch_losses = losses.tolist()
            train_loss = sum(batch_losses) / len(batch_losses)
            if not math.isfinite(train_loss):
                summary["status"] = "diverged"
                log.error("epoch %d: training loss is %s: the run diverged (learning rate too high?)", epoch, train_loss)
                break

            # ---- evaluate ----
            with monitor.recording():
                val = evaluate(model, val_batches, num_classes, autocast)
            train_eval = evaluate(model, train_eval_batches, num_classes, autocast)
            lr = optimizer.param_groups[0]["lr"]
            metrics: dict[str, Any] = {
                "epoch": epoch,
                "loss/train": train_loss,
                "loss/val": val["loss"],
                "acc/train": train_eval["acc"],
                "acc/train_running": correct.item() / seen,
                "acc/val": val["acc"],
                "gap": train_eval["acc"] - val["acc"],
                "lr": lr,
                "time/epoch": time.perf_counter() - epoch_start,
                "time/images_per_s": seen / train_time,
            }
            if regs:
                metrics["loss/penalty"] = penalty_sum.item() / n_batches
            metrics.update(monitor.fractions())
            if imbalanced:
                metrics["acc/val_balanced"] = val["balanced_acc"]
                metrics.update({f"acc_class/{name}": acc for name, acc in zip(classes, val["per_class_acc"])})

            # ---- schedule ----
            stalled_at_floor = False
            if plateau:
                was_bad = scheduler.num_bad_epochs
                scheduler.step(val["loss"])
                floor = scheduler.min_lrs[0]
                stalled_at_floor = lr <= floor * (1 + 1e-9) and was_bad + 1 > scheduler.patience
            else:
                scheduler.step()

            # ---- log ----
            for tag, value in metrics.items():
                if tag != "epoch":
                    writer.add_scalar(tag, value, epoch)
            first_step = step - n_batches
            for j, value in enumerate(batch_losses):
                writer.add_scalar("batch/loss", value, first_step + j)
            writer.flush()
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
            with open(run_dir / "batches.csv", "a") as f:
                if first_step == 0:
                    f.write("step,epoch,loss\n")
                f.writelines(f"{first_step + j},{epoch},{value:.6g}\n" for j, value in enumerate(batch_losses))
            log.info("epoch %d/%d  loss %.4f/%.4f  acc %.4f/%.4f  gap %+.4f  lr %.3g  %.1fs  %.0f img/s",
                     epoch, tcfg.epochs, train_loss, val["loss"], train_eval["acc"], val["acc"],
                     metrics["gap"], lr, metrics["time/epoch"], metrics["time/images_per_s"])

            # ---- checkpoint ----
            improved = val["acc"] > best["acc/val"]
            if improved:
                best = {"epoch": epoch, "acc/val": val["acc"], "loss/val": val["loss"], "acc/train": train_eval["acc"]}
            atomic_save({
                "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "rng": ckpt.rng_state(generator), "best": best, "fingerprint": _fingerprint(cfg),
                "config": OmegaConf.to_container(cfg, resolve=True), "classes": list(classes),
                "image_shape": image_shape, "metrics": metrics,
            }, run_dir / "checkpoints" / "last.pt")
            if improved:
                atomic_copy(run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt")
            if tcfg.keep_checkpoints:
                atomic_copy(run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt")
            summary["epochs"] = epoch
            last_epoch_metrics = metrics
            if tcfg.stop_at_min_lr and stalled_at_floor:
                log.info("validation stalled at the minimum learning rate: stopping early")
                break
    except KeyboardInterrupt:
        summary.update(status="interrupted", wall_time_s=time.time() - started)
        atomic_write_json(run_dir / "summary.json", summary)
        writer.close()
        log.warning("interrupted: resume with trainer.resume=%s", run_dir)
        raise
    except BaseException:
        summary.update(status="failed", wall_time_s=time.time() - started)
        atomic_write_json(run_dir / "summary.json", summary)
        writer.close()
        raise

    # --- test: the final weights, then the best-on-validation weights ---------------------------
    test_batches = Batches(splits.test.images, splits.test.labels, tcfg.eval_batch_size, device)
    final_test = evaluate(model, test_batches, num_classes, autocast)
    best_path = run_dir / "checkpoints" / "best.pt"
    if best_path.exists():
        model.load_state_dict(ckpt.load(best_path, device)["model"])
    best_test = evaluate(model, test_batches, num_classes, autocast)
    final = {k: v for k, v in last_epoch_metrics.items() if k.split("/")[0] in ("loss", "acc", "gap")}
    final.update({"acc/test": final_test["acc"], "loss/test": final_test["loss"], "acc/test_balanced": final_test["balanced_acc"]})
    best.update({"acc/test": best_test["acc"], "loss/test": best_test["loss"], "acc/test_balanced": best_test["balanced_acc"]})
    if summary["status"] == "running":
        summary["status"] = "completed"
    summary.update(best=best, final=final, wall_time_s=time.time() - started,
                   test_per_class_acc=dict(zip(classes, best_test["per_class_acc"])))
    atomic_write_json(run_dir / "summary.json", summary)
    hparams = {**names, "lr": cfg.optim.lr, "batch_size": tcfg.batch_size, "epochs": tcfg.epochs, "seed": cfg.seed}
    writer.add_hparams(hparams, {"hparam/acc_val": best["acc/val"], "hparam/acc_test": best["acc/test"],
                                 "hparam/gap": final.get("gap", 0.0)}, run_name=".")
    writer.close()
    log.info("test accuracy %.4f (best epoch %d, val %.4f); final weights %.4f; %.0fs -> %s",
             best["acc/test"], best["epoch"], best["acc/val"], final["acc/test"], summary["wall_time_s"], run_dir)
    return summary
