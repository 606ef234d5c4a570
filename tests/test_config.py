"""Config composition and validation: every option composes; bad input is one clear line."""

from __future__ import annotations

from importlib.resources import files

import pytest
from omegaconf import OmegaConf

from cnntricks.cli import check_command_line
from cnntricks.config import ConfigError, check_config, group_options, schema_of

CONF = files("cnntricks.conf")
SINGLE = ["data", "model", "optim", "sched", "trainer", "act", "init", "preprocess", "sampler"]
MULTI = ["aug", "reg"]


def options(group: str) -> list[str]:
    return sorted(p.name[:-5] for p in CONF.joinpath(group).iterdir() if p.name.endswith(".yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in SINGLE for o in options(g)])
def test_every_single_option_composes_and_validates(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}")
    check_config(cfg)
    if group not in ("data", "trainer"):
        assert "_target_" in cfg[group]


@pytest.mark.parametrize("group,option", [(g, o) for g in MULTI for o in options(g)])
def test_every_multi_option_composes_under_its_own_key(make_cfg, group, option):
    cfg = make_cfg(f"+{group}={option}")
    check_config(cfg)
    assert list(group_options(cfg[group])) == [option]


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(make_cfg, experiment):
    check_config(make_cfg(f"experiment={experiment}"))


def test_multi_select_keeps_the_command_line_order(make_cfg):
    names = options("aug")[:3]
    cfg = make_cfg(f"+aug=[{','.join(reversed(names))}]")
    assert list(group_options(cfg.aug)) == list(reversed(names))


def test_defaults_are_the_documented_ones(make_cfg):
    cfg = make_cfg(tiny=False)
    assert cfg.data.name == "shapes"
    assert (cfg.data.n_train, cfg.data.n_val, cfg.data.n_test, cfg.data.image_size) == (5000, 1000, 1000, 32)
    assert cfg.optim._target_ == "torch.optim.SGD" and cfg.optim.lr == 0.1
    assert cfg.sched._target_.endswith("ReduceLROnPlateau") and cfg.sched.factor == 0.5
    assert cfg.model._target_ == "cnntricks.models.VGG"
    assert group_options(cfg.aug) == {} and group_options(cfg.reg) == {}
    assert cfg.aug.minority_only is False


@pytest.mark.parametrize("overrides,expected", [
    (["trainer.epochs=abc"], "trainer.epochs"),
    (["trainer.epoch=3"], "trainer.epoch: unknown option; accepted: epochs"),
    (["act=nope"], "act=nope: unknown option; accepted values: "),
    (["model.width=wide"], "model.width"),
    (["+model.widht=3"], "model.widht: unknown parameter of VGG; accepted: "),
    (["trainer.device=tpu"], "trainer.device=tpu: accepted values: auto, cpu, cuda, mps"),
    (["trainer.batch_size=0"], "trainer.batch_size=0: must be >= 1"),
    (["-m", "act=relu,nope"], "act=nope"),
    # Range checks of the tricks themselves, caught before any data is loaded.
    (["+aug=hsv", "aug.hsv.power=[4.0,0.25]"], "aug.hsv: power=[4.0, 0.25]: low must be <= high"),
    (["+aug=crop", "aug.crop.size=40"], "aug.crop: size=40: larger than the 32x32 image"),
    (["preprocess=zca_whiten", "preprocess.eps=0"], "preprocess: eps=0"),
    (["act=rrelu", "act.lower=8.0", "act.upper=3.0"], "act: lower=8.0, upper=3.0"),
    (["+reg=dropout", "reg.dropout.p=1.0"], "reg.dropout: p=1.0"),
    (["+reg=max_norm", "reg.max_norm.c=0"], "reg.max_norm: c=0"),
    (["+reg=l2", "reg.l2.weight=-1e-4"], "reg.l2: weight=-0.0001"),
    (["+aug.minority_onl=true", "+aug=[crop]"], "aug.minority_onl=True: not an option of aug"),
    (["aug.minority_only=yes", "+aug=[crop]"], "aug.minority_only=yes: must be a bool"),
])
def test_bad_input_is_one_line_naming_the_option(overrides, expected):
    with pytest.raises(ConfigError) as error:
        check_command_line([o for o in overrides if o != "-m"])
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_unknown_option_lists_the_accepted_ones():
    with pytest.raises(ConfigError) as error:
        check_command_line(["act=nope"])
    for option in options("act"):
        assert option in str(error.value)


def test_signature_schema_types_each_parameter():
    def f(width: int = 8, rate: float = 0.5, name: str = "x", flag: bool = False, sizes: tuple[float, float] = (1.0, 2.0)):
        return None

    schema, names = schema_of(f)
    assert names == ("width", "rate", "name", "flag", "sizes")
    cfg = OmegaConf.structured(schema)
    assert cfg.width == 8 and list(cfg.sizes) == [1.0, 2.0]
    with pytest.raises(Exception):
        OmegaConf.merge(cfg, {"width": "many"})
