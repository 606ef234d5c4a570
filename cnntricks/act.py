"""Activation functions (config group ``act``) and the factory the models call for every nonlinearity.

An option is a ``_target_`` node: a torch activation class used as is (``torch.nn.ReLU``,
``torch.nn.LeakyReLU``, ...) or a module defined here. The models know nothing about the choice:
they receive an :data:`ActFactory` and call it with the channel count of the layer it follows.
Only targets with a ``num_parameters`` parameter (per-channel activations such as
``torch.nn.PReLU``) are given that count.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor, nn

ActFactory = Callable[[int], nn.Module]

# The runtime keyword through which per-channel activations learn their width (torch's name).
CHANNELS_KWARG = "num_parameters"


class RReLU(nn.Module):
    """Randomized leaky ReLU as the NDSB winner used it (not ``torch.nn.RReLU``).

    Training: each element's negative slope is ``1/a`` with ``a ~ U(lower, upper)``, drawn anew
    on every call. Evaluation: the slope is fixed at ``2/(lower + upper)``, i.e. ``1/E[a]``.
    torch's RReLU instead draws the *slope* uniformly and uses the mean slope at eval.
    """

    def __init__(self, lower: float = 3.0, upper: float = 8.0) -> None:
        super().__init__()
        if not 0 < lower < upper:
            raise ValueError(f"lower={lower}, upper={upper}: need 0 < lower < upper")
        self.lower, self.upper = float(lower), float(upper)

    @property
    def eval_slope(self) -> float:
        return 2.0 / (self.lower + self.upper)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return F.leaky_relu(x, self.eval_slope)
        a = torch.empty_like(x).uniform_(self.lower, self.upper)
        return torch.where(x >= 0, x, x / a)

    def extra_repr(self) -> str:
        return f"lower={self.lower}, upper={self.upper}"


# Activations whose units can die (zero or near-zero output and gradient for negative input).
RELU_FAMILY = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU, RReLU)


@dataclass(frozen=True)
class _Factory:
    """Picklable :data:`ActFactory`: the target with its YAML keywords bound."""

    target: Callable[..., nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)
    per_channel: bool = False

    def __call__(self, channels: int) -> nn.Module:
        if self.per_channel:
            return self.target(**self.kwargs, **{CHANNELS_KWARG: channels})
        return self.target(**self.kwargs)


def create_act(act_cfg: Any) -> ActFactory:
    """Turn an ``act`` config node (``_target_`` + keywords) into an :data:`ActFactory`.

    One module is built immediately so that a bad value (e.g. ``lower >= upper``) raises its
    ``ValueError`` here, at start-up, rather than deep inside a model constructor.
    """
    bound = instantiate(act_cfg, _partial_=True)
    per_channel = CHANNELS_KWARG in inspect.signature(bound.func).parameters
    factory = _Factory(bound.func, dict(bound.keywords), per_channel)
    factory(1)
    return factory
