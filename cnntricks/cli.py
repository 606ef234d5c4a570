"""`cnntricks <subcommand>`: the command-line entry point.

`train` is a Hydra app (a thin wrapper around `cnntricks.train.train`); before Hydra starts, every
job of the command line (each combination of a sweep too) is composed and checked here, so bad
input costs one line on stderr and exit status 2 instead of a traceback or a half-made run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from omegaconf import OmegaConf

from cnntricks.config import ConfigError

CONFIG_MODULE = "cnntricks.conf"
# Hydra flags that print something and train nothing: no pre-check for them.
_INFO_FLAGS = ("-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion", "-p", "--package")
_MULTIRUN_FLAGS = ("-m", "--multirun")


def _run_suffix(override_dirname: str) -> str:
    """`_<overrides>` for a run directory name (empty for the default run), safe as one path part."""
    if not override_dirname:
        return ""
    return "_" + override_dirname.replace("/", "_")[:160]


OmegaConf.register_new_resolver("cnntricks.suffix", _run_suffix, replace=True)


def error_exit(message: str) -> None:
    print(f"cnntricks: error: {message}", file=sys.stderr)
    sys.exit(2)


def _full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


# --- composition checks ------------------------------------------------------------------------


def _options_on_disk(group: str) -> list[str]:
    from importlib.resources import files

    folder = files(CONFIG_MODULE).joinpath(group)
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def explain_composition_error(error: Exception, override: str | None = None) -> str:
    """One line out of Hydra's and OmegaConf's multi-line composition errors."""
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group = error.missing_cfg_file.rsplit("/", 1)[0] if "/" in error.missing_cfg_file else ""
        options = list(error.options or []) or _options_on_disk(group)
        if group:
            return f"{group}={error.missing_cfg_file.rsplit('/', 1)[-1]}: unknown option; accepted values: {', '.join(options)}"
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    inner = [line.strip() for line in str(cause).splitlines() if line.strip()]
    full_key = getattr(cause, "full_key", None)
    if full_key and inner:
        if "not in struct" in inner[0] or "not in" in inner[0]:
            return f"{full_key}: unknown option{_accepted_keys(full_key)}"
        return f"{full_key}: {inner[0]}"
    message = lines[0] if lines else type(error).__name__
    if inner and cause is not error and inner[0] not in message:
        message += f" ({inner[0]})"
    return message


def _accepted_keys(full_key: str) -> str:
    """'; accepted: a, b, c' listing the keys beside `full_key` in the default config."""
    from hydra import compose

    parent, _, _ = full_key.rpartition(".")
    try:
        node = compose("config") if not parent else OmegaConf.select(compose("config"), parent)
    except Exception:
        return ""
    if node is None or not OmegaConf.is_dict(node):
        return ""
    return "; accepted: " + ", ".join(str(k) for k in node.keys())


def _jobs(overrides: list[str]) -> list[list[str]]:
    """The override list of every job a command line starts (a sweep expands to its product)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(job) for batch in batches for job in batch] or [[]]


def check_command_line(overrides: list[str]) -> None:
    """Compose and check every job of `cnntricks train OVERRIDES`; ConfigError on the first bad one."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from cnntricks.config import check_config

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        try:
            jobs = _jobs(overrides)
        except Exception as error:
            raise ConfigError(explain_composition_error(error)) from None
        expanded = []
        for job in jobs:
            try:
                cfg = compose("config", overrides=job, return_hydra_config=True)
            except Exception as error:
                raise ConfigError(explain_composition_error(error)) from None
            # An experiment may declare its own sweep (hydra.sweeper.params): check those jobs too.
            params = cfg.hydra.sweeper.get("params") or {}
            extra = [f"{key}={value}" for key, value in params.items()]
            expanded += [job + more for more in _jobs(extra)] if extra else [job]
        for job in expanded:
            try:
                cfg = compose("config", overrides=job)
            except Exception as error:
                raise ConfigError(explain_composition_error(error)) from None
            check_config(cfg)
    GlobalHydra.instance().clear()


# --- subcommands -------------------------------------------------------------------------------


def _hydra_app(task: Callable, argv: list[str]) -> None:
    """Run `task` as a Hydra app on `argv`, after checking every job it would start."""
    import hydra

    if not any(a.split("=")[0] in _INFO_FLAGS for a in argv):
        overrides = [a for a in argv if a not in _MULTIRUN_FLAGS and not a.startswith("hydra.")]
        try:
            check_command_line(overrides)
        except ConfigError as error:
            if _full_errors():
                raise
            error_exit(str(error))
    main = hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name="config", version_base="1.3")(task)
    saved = sys.argv
    sys.argv = [saved[0], *argv]
    try:
        main()
    finally:
        sys.argv = saved


def _train_task(cfg) -> float:
    from hydra.core.hydra_config import HydraConfig

    from cnntricks.train import train

    try:
        summary = train(cfg, run_dir=HydraConfig.get().runtime.output_dir)
    except ConfigError as error:
        if _full_errors():
            raise
        error_exit(str(error))
    # What a Hydra sweeper (e.g. Optuna) maximises.
    return summary["best"]["acc/val"]


def cmd_train(argv: list[str]) -> None:
    _hydra_app(_train_task, argv)


def cmd_eval(argv: list[str]) -> None:
    from cnntricks.evaluate import main as eval_main

    eval_main(argv)


def cmd_show_aug(argv: list[str]) -> None:
    import argparse

    from hydra import compose, initialize_config_module

    from cnntricks.show_aug import show_aug

    parser = argparse.ArgumentParser(
        prog="cnntricks show-aug",
        description="Write a PNG grid: training images in the first row, augmented versions below.",
        epilog="example: cnntricks show-aug '+aug=[flip,crop,hsv]' --out aug.png")
    parser.add_argument("overrides", nargs="*", help="the same overrides as cnntricks train, e.g. '+aug=[flip,crop]'")
    parser.add_argument("--out", type=Path, default=Path("outputs/show_aug.png"))
    parser.add_argument("--images", type=int, default=8, help="images per row (cycling through the classes)")
    parser.add_argument("--rows", type=int, default=4, help="augmented rows")
    args = parser.parse_args(argv)
    try:
        check_command_line(args.overrides)
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose("config", overrides=args.overrides)
        print(show_aug(cfg, args.out, n_images=args.images, n_rows=args.rows))
    except ConfigError as error:
        if _full_errors():
            raise
        error_exit(str(error))


COMMANDS: dict[str, tuple[Callable[[list[str]], None], str]] = {
    "train": (cmd_train, "train a model (Hydra overrides; -m for sweeps; --help lists every option)"),
    "eval": (cmd_eval, "evaluate a run directory or checkpoint on the test split"),
    "show-aug": (cmd_show_aug, "write a PNG grid of training images under the chosen +aug options"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: cnntricks <command> [args]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run `cnntricks <command> --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if argv[0] not in COMMANDS:
        error_exit(f"unknown command {argv[0]!r}; accepted: {', '.join(COMMANDS)}")
    COMMANDS[argv[0]][0](argv[1:])


if __name__ == "__main__":
    main()
