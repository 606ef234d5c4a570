"""Weight initialisation (config group ``init``), applied once to a freshly built model.

An option is a ``_target_`` node naming an :class:`Initializer`. :func:`apply_init` gives every
conv and linear weight the option's distribution, zeroes their biases and resets normalisation
layers to the identity (weight 1, bias 0); ``default`` keeps torch's own initialisation untouched.
The formulas use torch.nn.init so fans are computed the way torch computes them
(``fan_in = in_channels/groups * kernel area``, ``fan_out = out_channels * kernel area``).
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from torch import Tensor, nn

from cnntricks.checks import check_choice

# Layers whose weight is [out, in, *kernel]: torch's fan computation is right for them
# (transposed convolutions store [in, out, ...] and are deliberately left out).
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
MODES = ("fan_in", "fan_out")


class Initializer:
    """Base class: :meth:`init_weight` fills one weight tensor in place."""

    def init_weight(self, weight: Tensor) -> None:
        raise NotImplementedError

    def apply(self, model: nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, WEIGHTED):
                self.init_weight(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, NORMS) and getattr(module, "weight", None) is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


class TorchDefault(Initializer):
    """Keep the initialisation torch's layer constructors already did."""

    def apply(self, model: nn.Module) -> None:
        pass


class Zeros(Initializer):
    """w = 0: every unit of a layer computes the same thing and gets the same update."""

    def init_weight(self, weight: Tensor) -> None:
        nn.init.zeros_(weight)


class SmallRandom(Initializer):
    """w ~ scale * N(0, 1): breaks symmetry, but the signal shrinks layer after layer."""

    def __init__(self, scale: float = 0.001) -> None:
        if not scale > 0:
            raise ValueError(f"scale={scale}: must be > 0")
        self.scale = scale

    def init_weight(self, weight: Tensor) -> None:
        nn.init.normal_(weight, 0.0, self.scale)


class Calibrated(Initializer):
    """w ~ N(0, 1) / sqrt(fan): unit output variance for a linear unit."""

    # Gain per torch.nn.init.calculate_gain: 1 here, sqrt(2) for He.
    nonlinearity = "linear"

    def __init__(self, mode: str = "fan_in") -> None:
        self.mode = check_choice("mode", mode, MODES)

    def init_weight(self, weight: Tensor) -> None:
        nn.init.kaiming_normal_(weight, mode=self.mode, nonlinearity=self.nonlinearity)


class He(Calibrated):
    """w ~ N(0, 1) * sqrt(2 / fan): calibrated for ReLU, which zeroes half of its input."""

    nonlinearity = "relu"


class Xavier(Initializer):
    """Glorot normal: w ~ N(0, 1) * sqrt(2 / (fan_in + fan_out))."""

    def init_weight(self, weight: Tensor) -> None:
        nn.init.xavier_normal_(weight)


def apply_init(model: nn.Module, init_cfg: Any) -> nn.Module:
    """Initialise ``model`` in place per the ``init`` config node; returns the model."""
    # Build via a partial and call it here, so a range error reaches the caller unwrapped.
    initializer: Initializer = instantiate(init_cfg, _partial_=True)()
    initializer.apply(model)
    return model
