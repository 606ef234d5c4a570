"""Activations: every option builds, the text's RReLU in both phases, PReLU per channel."""

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from cnntricks.act import RReLU, create_act

ACT_DIR = Path(__file__).resolve().parents[1] / "conf" / "act"


@pytest.mark.parametrize("path", sorted(ACT_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_option_builds_a_working_module(path):
    factory = create_act(OmegaConf.load(path))
    layer = factory(4)
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    y = layer(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert factory(4) is not layer  # a fresh module per call: no hidden parameter sharing


def test_leaky_preset_uses_the_study_slope():
    layer = create_act(OmegaConf.load(ACT_DIR / "leaky_relu_5_5.yaml"))(1)
    assert layer(torch.tensor([-5.5])).item() == pytest.approx(-1.0)


def test_rrelu_training_slopes_follow_one_over_uniform():
    torch.manual_seed(0)
    layer = RReLU(lower=3.0, upper=8.0).train()
    x = -torch.ones(200_000)
    slopes = -layer(x)
    assert slopes.min() >= 1 / 8 and slopes.max() <= 1 / 3
    assert slopes.mean().item() == pytest.approx(math.log(8 / 3) / 5, abs=1e-3)  # E[1/a]
    assert slopes.unique().numel() > 1000  # drawn per element, not per call


def test_rrelu_eval_slope_is_fixed_at_two_over_l_plus_u():
    # 2/11, not torch.nn.RReLU's mean slope (1/8 + 1/3) / 2.
    layer = RReLU().eval()
    x = torch.tensor([-11.0, -1.0, 0.0, 2.5])
    torch.testing.assert_close(layer(x), torch.tensor([-2.0, -2 / 11, 0.0, 2.5]), rtol=0, atol=0)


def test_rrelu_positive_part_is_identity_and_backward_works():
    layer = RReLU().train()
    x = torch.randn(1000, requires_grad=True)
    y = layer(x)
    positive = x > 0
    assert torch.equal(y[positive], x[positive])
    y.sum().backward()
    assert torch.equal(x.grad[positive], torch.ones(int(positive.sum())))
    negative_grad = x.grad[~positive]
    assert (negative_grad >= 1 / 8).all() and (negative_grad <= 1 / 3).all()


@pytest.mark.parametrize(("lower", "upper"), [(8.0, 3.0), (3.0, 3.0), (0.0, 8.0), (-1.0, 8.0)])
def test_rrelu_rejects_bad_range(lower, upper):
    with pytest.raises(ValueError, match=rf"lower={lower}, upper={upper}: need 0 < lower < upper"):
        create_act(OmegaConf.create({"_target_": "cnntricks.act.RReLU", "lower": lower, "upper": upper}))


def test_prelu_is_per_channel_and_learns_its_slope():
    layer = create_act(OmegaConf.load(ACT_DIR / "prelu.yaml"))(3)
    assert isinstance(layer, nn.PReLU)
    assert layer.weight.shape == (3,)
    assert torch.equal(layer.weight.detach(), torch.full((3,), 0.25))
    x = -torch.ones(2, 3, 4, 4)
    x[:, 0] = 1.0  # channel 0 only positive: its slope gets no gradient
    layer(x).sum().backward()
    assert layer.weight.grad[0] == 0
    torch.testing.assert_close(layer.weight.grad[1:], torch.full((2,), -32.0))


def test_channel_count_goes_only_to_per_channel_targets():
    relu = create_act(OmegaConf.create({"_target_": "torch.nn.ReLU"}))(7)
    assert isinstance(relu, nn.ReLU)
    assert create_act({"_target_": "torch.nn.PReLU", "init": 0.1})(7).num_parameters == 7
