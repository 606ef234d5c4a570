"""The config schema, its validation, and the builder that turns `_target_` nodes into objects.

Two layers of checking, both before any training starts:
* the fixed part of the config (seed, data, trainer) is a structured config registered in Hydra's
  ConfigStore, so Hydra itself rejects a typo or a wrong type while composing;
* every trick option is a `_target_` node whose schema is derived from the target's signature
  (see `schema_of`), so adding a trick needs only its class and its YAML file.
Errors reach the user as one `ConfigError` line naming the option and what it accepts.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from hydra.core.config_store import ConfigStore
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

# Groups whose option is one `_target_` node, and multi-select groups holding a mapping of them.
TARGET_GROUPS = ("model", "optim", "sched", "act", "init", "preprocess", "sampler")
MULTI_GROUPS = ("aug", "reg")
# Entries of a multi-select group that are not options: group-wide switches and their types.
GROUP_SWITCHES: dict[str, dict[str, type]] = {"aug": {"minority_only": bool}}
DEVICES = ("auto", "cpu", "cuda", "mps")
AMP_DTYPES = ("bfloat16", "float16")


class ConfigError(ValueError):
    """A bad option value: its message is the one line the user sees."""


@dataclass
class ImbalanceConfig:
    ratio: float = 1.0  # n_max / n_min of the long-tailed training split; 1 = as loaded
    profile: str = "exp"


@dataclass
class DataConfig:
    name: str = "shapes"
    root: str = "data"
    n_train: Optional[int] = None
    n_val: Optional[int] = None
    n_test: Optional[int] = None
    image_size: int = 32
    download: bool = False
    val_fraction: float = 0.1
    seed: int = 0  # the data's own seed, so a sweep over `seed` trains on the same images
    workers: int = 0
    imbalance: ImbalanceConfig = field(default_factory=ImbalanceConfig)


@dataclass
class TrainerConfig:
    epochs: int = 15
    batch_size: int = 128
    eval_batch_size: int = 500
    device: str = "auto"
    amp: bool = False
    amp_dtype: str = "bfloat16"
    compile: bool = False
    channels_last: bool = False
    progress: bool = True
    resume: Optional[str] = None
    warmup_epochs: float = 2.0
    keep_checkpoints: bool = False
    stop_at_min_lr: bool = False
    # Training accuracy is measured in eval mode on this many training images (None: as many as
    # the validation split), so the train/val gap is not blurred by augmentation or dropout.
    train_eval_size: Optional[int] = None
    threads: Optional[int] = None


@dataclass
class Config:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    model: Any = None
    optim: Any = None
    sched: Any = None
    act: Any = None
    init: Any = None
    preprocess: Any = None
    sampler: Any = None
    aug: dict[str, Any] = field(default_factory=dict)
    reg: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(name="cnntricks_schema", node=Config)


# --- schemas of `_target_` nodes, derived from signatures -----------------------------------------

_SIMPLE = (int, float, bool, str)


def _omegaconf_type(annotation: Any) -> Any:
    """The annotation if OmegaConf can type-check it, else Any (e.g. torch's Union[float, Tensor])."""
    if annotation in _SIMPLE or annotation is Any:
        return annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2 and _omegaconf_type(rest[0]) is not Any:
            return Optional[rest[0]]
        return Any
    if origin in (list, tuple) and all(a in _SIMPLE or a is Ellipsis for a in args):
        return annotation
    return Any


@functools.cache
def schema_of(target: Callable) -> tuple[type | None, tuple[str, ...]]:
    """A dataclass with one typed field per keyword parameter of `target`, and the accepted names.

    Returns (None, names) when the target takes **kwargs: any key is then accepted.
    """
    init = target.__init__ if inspect.isclass(target) else target
    signature = inspect.signature(target)
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # unresolvable forward references in third-party code
        hints = {}
    fields, names = [], []
    takes_kwargs = False
    for name, param in signature.parameters.items():
        if param.kind is param.VAR_KEYWORD:
            takes_kwargs = True
            continue
        if param.kind is param.VAR_POSITIONAL:
            continue
        names.append(name)
        ftype = _omegaconf_type(hints.get(name, Any))
        if param.default is param.empty:
            fields.append((name, Any, field(default=None)))
            continue
        default = param.default
        if default is None and ftype is not Any:
            ftype = Optional[ftype]
        if isinstance(default, (list, tuple, dict)):
            fields.append((name, ftype, field(default_factory=lambda d=default: d)))
        elif default is None or isinstance(default, _SIMPLE):
            fields.append((name, ftype, field(default=default)))
        else:  # a default OmegaConf cannot hold (an object): accept any value
            fields.append((name, Any, field(default=None)))
    if takes_kwargs:
        return None, tuple(names)
    return dataclasses.make_dataclass(f"{target.__name__}Schema", fields), tuple(names)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def check_node(node: Any, path: str) -> None:
    """Type-check the keys of one `_target_` node against its target's signature."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(f"{path}: expected an option with a _target_, got {node!r}")
    try:
        target = get_object(node._target_)
    except Exception as error:
        raise ConfigError(f"{path}._target_={node._target_}: cannot import it ({_first_line(error)})")
    schema, names = schema_of(target)
    values = OmegaConf.to_container(node, resolve=True)
    values = {k: v for k, v in values.items() if not k.startswith("_")}
    unknown = [k for k in values if k not in names]
    if unknown and schema is not None:
        raise ConfigError(f"{path}.{unknown[0]}: unknown parameter of {target.__name__}; accepted: {', '.join(names)}")
    if schema is None:
        return
    try:
        OmegaConf.merge(OmegaConf.structured(schema), values)
    except OmegaConfBaseException as error:
        key = getattr(error, "key", None) or ""
        raise ConfigError(f"{path}.{key}: {_first_line(error)}") from None


def pick_device(name: str) -> torch.device:
    """`trainer.device` as a torch device: auto = cuda, then mps, then cpu; a missing one is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda: no CUDA device is available; accepted here: auto, cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.device=mps: no MPS device is available; accepted here: auto, cpu")
    return torch.device(name)


def check_config(cfg: DictConfig) -> None:
    """Everything that can be checked without data: schemas, then the constructors' range checks."""
    trainer = cfg.trainer
    if trainer.device not in DEVICES:
        raise ConfigError(f"trainer.device={trainer.device}: accepted values: {', '.join(DEVICES)}")
    pick_device(trainer.device)  # a device this machine lacks fails here, before any run directory
    if trainer.amp_dtype not in AMP_DTYPES:
        raise ConfigError(f"trainer.amp_dtype={trainer.amp_dtype}: accepted values: {', '.join(AMP_DTYPES)}")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if trainer[key] < 1:
            raise ConfigError(f"trainer.{key}={trainer[key]}: must be >= 1")
    if trainer.warmup_epochs < 0:
        raise ConfigError(f"trainer.warmup_epochs={trainer.warmup_epochs}: must be >= 0 (0: no warm-up)")
    for group in TARGET_GROUPS:
        check_node(cfg[group], group)
    for group in MULTI_GROUPS:
        check_switches(group, cfg[group])
        for name, node in group_options(cfg[group]).items():
            check_node(node, f"{group}.{name}")
    # Cheap options are built once now, so their own range checks (rrelu lower < upper, whitening
    # eps > 0, a crop larger than the image) fail before any data is loaded; model, optimiser and
    # scheduler need the network first.
    size = cfg.data.image_size
    for group in ("act", "init", "sampler"):
        build(cfg[group], group, _probe=True)
    build(cfg.preprocess, "preprocess", _probe=True, image_shape=(3, size, size))
    for group in MULTI_GROUPS:
        for name, node in group_options(cfg[group]).items():
            option = build(node, f"{group}.{name}", _probe=True)
            if hasattr(option, "check_image_size"):
                try:
                    option.check_image_size(size, size)
                except ValueError as error:
                    raise ConfigError(f"{group}.{name}: {_first_line(error)}") from None


def group_options(group: DictConfig) -> dict[str, DictConfig]:
    """The options chosen in a multi-select group; other entries are group-wide switches
    (GROUP_SWITCHES, e.g. `aug.minority_only`) that the group's own builder reads."""
    return {name: node for name, node in group.items() if isinstance(node, DictConfig)}


def check_switches(name: str, group: DictConfig) -> None:
    """Every entry of multi-select group `name` that is not an option must be a known switch."""
    switches = GROUP_SWITCHES.get(name, {})
    for key, value in group.items():
        if isinstance(value, DictConfig):
            continue
        if key not in switches:
            accepted = ", ".join(switches) or "none"
            raise ConfigError(f"{name}.{key}={value}: not an option of {name} (pick options with '+{name}=[...]'); switches: {accepted}")
        if not isinstance(value, switches[key]):
            raise ConfigError(f"{name}.{key}={value}: must be a {switches[key].__name__}")


def build(node: DictConfig, path: str, _probe: bool = False, **runtime: Any) -> Any:
    """Instantiate a `_target_` node; a constructor's ValueError becomes a one-line ConfigError.

    Run-time arguments (modules, tensors, factories) are passed to the constructor directly rather
    than merged into the config, so they keep their Python type. With `_probe`, a TypeError (a
    missing run-time argument) is ignored: the node is only being checked early.
    """
    constructor = instantiate(node, _partial_=True, _convert_="all")
    try:
        return constructor(**runtime)
    except (ValueError, TypeError) as error:
        if _probe and isinstance(error, TypeError):
            return None
        raise ConfigError(f"{path}: {_first_line(error)}") from None
