"""Dead-unit monitor: 0 when every unit fires, 1 for a layer forced dead, silent outside recording."""

import pytest
import torch
from torch import nn

from cnntricks.act import RReLU
from cnntricks.monitor import DeadUnitMonitor


def net(act: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), act, nn.Flatten(), nn.Linear(8 * 16, 5), nn.ReLU()
    )


@pytest.mark.parametrize("act", [nn.ReLU(), nn.LeakyReLU(0.01), nn.PReLU(8), RReLU()])
def test_all_firing_net_reports_zero(act):
    model = net(act).eval()
    monitor = DeadUnitMonitor(model)
    with monitor.recording():
        model(torch.randn(64, 3, 4, 4))
    assert monitor.fractions() == {"dead/1": 0.0, "dead/4": 0.0, "dead/all": 0.0}


def test_forced_dead_layer_reports_one_and_all_is_unit_weighted():
    model = net(nn.LeakyReLU(0.1)).eval()
    with torch.no_grad():
        model[0].bias.fill_(-1e3)  # pre-activation always negative: leaky output never > 0
    monitor = DeadUnitMonitor(model)
    with monitor.recording():
        for _ in range(3):
            model(torch.randn(16, 3, 4, 4))
    fractions = monitor.fractions()
    assert fractions["dead/1"] == 1.0
    assert fractions["dead/all"] == pytest.approx((8 + 5 * fractions["dead/4"]) / 13)


def test_a_unit_firing_in_any_batch_is_alive_and_each_recording_starts_afresh():
    model = nn.Sequential(nn.Linear(1, 1), nn.ReLU())
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
    monitor = DeadUnitMonitor(model)
    with monitor.recording():
        model(-torch.ones(4, 1))
        model(torch.ones(4, 1))
    assert monitor.fractions()["dead/all"] == 0.0
    with monitor.recording():
        model(-torch.ones(4, 1))
    assert monitor.fractions()["dead/all"] == 1.0


def test_no_hooks_outside_recording_and_non_relu_layers_ignored():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Sigmoid())
    monitor = DeadUnitMonitor(model)
    assert list(monitor.layers) == ["1"]
    with monitor.recording():
        assert model[1]._forward_hooks
    assert not model[1]._forward_hooks
    model(torch.randn(2, 2))
    assert monitor.fractions() == {}
