"""Shared fixtures: configs composed from the packaged conf/, sized to run in seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

# Small enough for seconds per run, big enough that every class appears in every split.
TINY = [
    "data.n_train=300", "data.n_val=100", "data.n_test=100",
    "model.width=4", "trainer.epochs=2", "trainer.batch_size=32",
    "trainer.progress=false", "trainer.threads=1",
]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """One data cache for the whole session, so the procedural data set is generated once."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def make_cfg(data_root):
    """compose(overrides) -> the config `cnntricks train OVERRIDES` would run, at the tiny size."""

    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module="cnntricks.conf", version_base="1.3"):
            base = [*TINY, f"data.root={data_root}"] if tiny else [f"data.root={data_root}"]
            cfg = compose("config", overrides=[*base, *overrides])
        GlobalHydra.instance().clear()
        return cfg

    return make


def cnntricks_command() -> str:
    """The installed console script (the real `cnntricks` command of this environment)."""
    script = Path(sys.executable).parent / "cnntricks"
    assert script.exists(), "install the package first: pip install '.[test]'"
    return str(script)


@pytest.fixture
def run_cli(tmp_path, data_root):
    """Run `cnntricks ARGS` in tmp_path (so outputs/ lands there); returns the CompletedProcess."""

    def run(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        result = subprocess.run([cnntricks_command(), *args], cwd=tmp_path, capture_output=True,
                                text=True, env=full_env, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(f"cnntricks {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    return run


def tiny_cli_args(data_root: Path) -> list[str]:
    return [*TINY, f"data.root={data_root}"]
