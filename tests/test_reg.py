"""Regularisers: penalties equal their formulas, max-norm projects, dropout switches on."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

import cnntricks.config  # noqa: F401  (registers the config schema the primary config extends)
from cnntricks.reg import Regularizer

REG_DIR = Path(__file__).resolve().parents[1] / "conf" / "reg"


def build(name: str, **overrides) -> Regularizer:
    cfg = OmegaConf.merge(OmegaConf.load(REG_DIR / f"{name}.yaml"), overrides)
    return instantiate(cfg, _partial_=True)()  # unwrapped errors, as the trainer's builder sees them


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.PReLU(4), nn.Flatten(),
        nn.Dropout(p=0.0), nn.Linear(4 * 2 * 2, 6), nn.ReLU(), nn.Dropout(p=0.0), nn.Linear(6, 3),
    )


def conv_and_linear_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_package_directive_places_each_option_under_reg():
    for path in REG_DIR.glob("*.yaml"):
        assert path.read_text().startswith(f"# @package reg.{path.stem}\n")


@pytest.mark.parametrize(
    ("name", "params", "formula"),
    [
        ("l2", {"weight": 0.3}, lambda w: 0.5 * 0.3 * (w**2).sum()),
        ("l1", {"weight": 0.2}, lambda w: 0.2 * w.abs().sum()),
        (
            "elastic",
            {"l1_weight": 0.2, "l2_weight": 0.7},
            lambda w: 0.2 * w.abs().sum() + 0.7 * (w**2).sum(),
        ),
    ],
)
def test_penalty_equals_formula_on_weights_only(name, params, formula):
    model = mlp()
    reg = build(name, **params)
    reg.attach(model)
    weights = conv_and_linear_weights(model)
    expected = sum(formula(w) for w in weights)
    penalty = reg.penalty(model)
    torch.testing.assert_close(penalty, expected)
    penalty.backward()
    grads = [p.grad for p in model.parameters()]
    expected_grads = torch.autograd.grad(expected, weights)
    for w, g in zip(weights, expected_grads):
        torch.testing.assert_close(w.grad, g)
    # Biases, batch-norm and PReLU parameters are excluded by default.
    assert sum(g is not None for g in grads) == len(weights)


def test_include_bias_and_norm_covers_every_parameter():
    model = mlp()
    penalty = build("l2", weight=1.0, include_bias_and_norm=True).penalty(model)
    torch.testing.assert_close(penalty, 0.5 * sum((p**2).sum() for p in model.parameters()))


def test_penalty_without_weights_is_zero():
    assert build("l2").penalty(nn.Sequential(nn.ReLU())).item() == 0.0


def test_max_norm_projects_outside_rows_and_leaves_inside_rows_bit_exact():
    model = mlp()
    with torch.no_grad():
        for w in conv_and_linear_weights(model):
            w.mul_(10)
            w[0].mul_(1e-3)  # one unit well inside the ball
    before = [w.detach().clone() for w in conv_and_linear_weights(model)]
    reg = build("max_norm", c=3.0)
    reg.attach(model)
    reg.after_step(model)
    for w, old in zip(conv_and_linear_weights(model), before):
        norms = w.detach().flatten(1).norm(dim=1)
        assert (norms <= 3.0 + 1e-6).all()
        inside = old.flatten(1).norm(dim=1) <= 3.0
        assert inside[0] and (~inside).any()
        assert torch.equal(w.detach()[inside], old[inside])
        # Outside rows keep their direction and land on the sphere.
        torch.testing.assert_close(norms[~inside], torch.full_like(norms[~inside], 3.0))


def test_dropout_sets_placeholders_and_is_off_in_eval():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Dropout2d(p=0.0), nn.Flatten(),
        nn.Dropout(p=0.0), nn.Linear(4 * 4 * 4, 8), nn.ReLU(), nn.Dropout(p=0.0), nn.Linear(8, 3),
    )
    build("dropout", p=0.5, conv_p=0.2).attach(model)
    assert [m.p for m in model if isinstance(m, (nn.Dropout, nn.Dropout2d))] == [0.2, 0.5, 0.5]
    x = torch.randn(16, 3, 4, 4)
    assert not torch.equal(model.train()(x), model(x))  # random masks in training
    model.eval()
    assert torch.equal(model(x), model(x))
    head_input = model[:4](x)
    assert torch.equal(model[4](head_input), head_input)


def test_dropout_without_placeholders_fails_loudly():
    with pytest.raises(ValueError, match=r"p=0.5: the model has no nn.Dropout placeholder; set p=0"):
        build("dropout").attach(nn.Sequential(nn.Linear(2, 2)))


def test_every_option_is_combinable_in_one_step():
    model = mlp()
    regs = [build(path.stem) for path in sorted(REG_DIR.glob("*.yaml"))]
    for reg in regs:
        reg.attach(model)
    loss = model(torch.randn(4, 3, 4, 4)).square().mean() + sum(r.penalty(model) for r in regs)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    for reg in regs:
        reg.after_step(model)
    assert all(w.flatten(1).norm(dim=1).max() <= 3.0 + 1e-6 for w in conv_and_linear_weights(model))


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("dropout", {"p": 1.0}, r"p=1.0: must be in \[0, 1\)"),
        ("dropout", {"p": -0.1}, r"p=-0.1: must be in \[0, 1\)"),
        ("dropout", {"conv_p": 1.5}, r"conv_p=1.5: must be in \[0, 1\)"),
        ("max_norm", {"c": 0.0}, r"c=0.0: must be > 0"),
        ("l2", {"weight": -1e-4}, r"weight=-0.0001: must be >= 0"),
        ("l1", {"weight": -1.0}, r"weight=-1.0: must be >= 0"),
        ("elastic", {"l2_weight": -1.0}, r"l2_weight=-1.0: must be >= 0"),
    ],
)
def test_bad_values_raise_one_line_errors(name, params, message):
    with pytest.raises(ValueError, match=message):
        build(name, **params)


@pytest.mark.parametrize(
    ("experiment", "group", "expected"),
    [
        ("regularization", "reg", [[], ["l2"], ["dropout"], ["max_norm"], ["l2", "dropout", "max_norm"]]),
        ("activations", "act", ["sigmoid", "tanh", "relu", "leaky_relu", "leaky_relu_5_5", "prelu", "rrelu"]),
        ("init_depth", "init", ["zeros", "small_random", "calibrated", "xavier", "he"]),
    ],
)
def test_experiment_is_a_multirun_over_its_group(experiment, group, expected):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="cnntricks.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        assert cfg.hydra.mode == RunMode.MULTIRUN
        sweep = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
        jobs = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(sweep), None)[0]
        chosen = []
        for job in jobs:
            job_cfg = compose(
                "config", overrides=[f"experiment={experiment}", *job], return_hydra_config=True
            )
            chosen.append(list(job_cfg.reg) if group == "reg" else job_cfg.hydra.runtime.choices[group])
    GlobalHydra.instance().clear()
    assert chosen == expected
