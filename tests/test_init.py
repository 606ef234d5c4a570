"""Initialisation: each option's empirical std matches its formula; zeros keeps units symmetric."""

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from cnntricks.init import apply_init
from cnntricks.train import train

INIT_DIR = Path(__file__).resolve().parents[1] / "conf" / "init"

# (layer, fan_in, fan_out): big enough that the sample std is within ~1% of the true one.
LAYERS = {
    "conv": (lambda: nn.Conv2d(64, 96, 3), 64 * 9, 96 * 9),
    "linear": (lambda: nn.Linear(400, 200), 400, 200),
}

EXPECTED_STD = {
    "zeros": lambda fan_in, fan_out, fan: 0.0,
    "small_random": lambda fan_in, fan_out, fan: 0.001,
    "calibrated": lambda fan_in, fan_out, fan: 1 / math.sqrt(fan),
    "xavier": lambda fan_in, fan_out, fan: math.sqrt(2 / (fan_in + fan_out)),
    "he": lambda fan_in, fan_out, fan: math.sqrt(2 / fan),
}


def init_cfg(name: str, **overrides):
    return OmegaConf.merge(OmegaConf.load(INIT_DIR / f"{name}.yaml"), overrides)


# Options with a fan mode are tested in both modes; None: the option has no mode.
CASES = [(name, None) for name in ("zeros", "small_random", "xavier")] + [
    (name, mode) for name in ("calibrated", "he") for mode in ("fan_in", "fan_out")
]


@pytest.mark.parametrize("layer_kind", LAYERS)
@pytest.mark.parametrize(("name", "mode"), CASES)
def test_weight_std_matches_formula(name, mode, layer_kind):
    cfg = init_cfg(name) if mode is None else init_cfg(name, mode=mode)
    make, fan_in, fan_out = LAYERS[layer_kind]
    torch.manual_seed(0)
    layer = apply_init(make(), cfg)
    expected = EXPECTED_STD[name](fan_in, fan_out, fan_out if mode == "fan_out" else fan_in)
    weight = layer.weight.detach()
    assert weight.mean().item() == pytest.approx(0.0, abs=max(expected, 1e-12) * 0.05)
    assert weight.std().item() == pytest.approx(expected, rel=0.03, abs=1e-12)
    assert torch.equal(layer.bias.detach(), torch.zeros_like(layer.bias))


@pytest.mark.parametrize("name", EXPECTED_STD)
def test_norm_layers_reset_to_identity(name):
    norm = nn.BatchNorm2d(8)
    with torch.no_grad():
        norm.weight.uniform_(2, 3)
        norm.bias.uniform_(2, 3)
    apply_init(nn.Sequential(nn.Conv2d(3, 8, 3), norm), init_cfg(name))
    assert torch.equal(norm.weight.detach(), torch.ones(8))
    assert torch.equal(norm.bias.detach(), torch.zeros(8))


def test_default_leaves_torch_init_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_init(model, init_cfg("default"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_zeros_gives_every_hidden_unit_the_same_gradient():
    # No symmetry breaking: units of a hidden layer get identical incoming and outgoing gradients.
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(), nn.Flatten(),
        nn.Linear(6 * 4 * 4, 5), nn.Sigmoid(), nn.Linear(5, 10),
    )
    apply_init(model, init_cfg("zeros"))
    x, y = torch.randn(8, 3, 4, 4), torch.randint(0, 10, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    conv, hidden, out = model[0], model[3], model[5]
    for unit_rows in (conv.weight.grad, hidden.weight.grad, conv.bias.grad, hidden.bias.grad):
        assert torch.equal(unit_rows, unit_rows[:1].expand_as(unit_rows))
    # Outgoing weights of the hidden units: every column of the next layer's gradient is equal.
    assert torch.equal(out.weight.grad, out.weight.grad[:, :1].expand_as(out.weight.grad))
    per_channel = hidden.weight.grad.view(5, 6, 16)
    assert torch.equal(per_channel, per_channel[:, :1].expand_as(per_channel))


def test_bad_values_raise():
    with pytest.raises(ValueError, match=r"mode=fan_avg: accepted values: fan_in, fan_out"):
        apply_init(nn.Linear(2, 2), init_cfg("he", mode="fan_avg"))
    with pytest.raises(ValueError, match=r"scale=0.0: must be > 0"):
        apply_init(nn.Linear(2, 2), init_cfg("small_random", scale=0.0))


@pytest.mark.slow
def test_init_depth_experiment_he_trains_while_zeros_stays_at_log_10(make_cfg, tmp_path):
    # The experiment's deep plain net on tiny data: he escapes the chance-level plateau, zeros cannot.
    losses = {}
    for init in ("zeros", "he"):
        cfg = make_cfg(
            "experiment=init_depth", f"init={init}", "data.n_train=128", "data.n_val=64",
            "data.n_test=64", "trainer.epochs=12", "trainer.batch_size=64",
            "trainer.progress=false", "trainer.threads=1", tiny=False,
        )
        train(cfg, run_dir=tmp_path / init)
        with (tmp_path / init / "metrics.jsonl").open() as lines:
            losses[init] = [json.loads(line)["loss/train"] for line in lines]
    assert max(abs(loss - math.log(10)) for loss in losses["zeros"]) < 1e-3
    assert min(losses["he"]) < math.log(10) - 0.05
