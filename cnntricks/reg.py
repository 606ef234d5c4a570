"""Regularisers (config group ``reg``, multi-select: ``'+reg=[l2,dropout]'``).

Each entry of ``cfg.reg`` is a ``_target_`` node naming a :class:`Regularizer`; the trainer builds
one per entry and calls three hooks, which all default to no-ops:

* :meth:`Regularizer.attach` once, before training (dropout switches its placeholders on);
* :meth:`Regularizer.penalty` every step, added to the data loss (logged as ``loss/penalty``);
* :meth:`Regularizer.after_step` after every optimiser step (max-norm projection).

"Weights" are the parameters with at least two dimensions: conv filters and linear matrices.
Biases, normalisation parameters and PReLU slopes are one-dimensional, so they are left alone
unless a penalty is given ``include_bias_and_norm: true``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnntricks.checks import check_range


def weights(model: nn.Module, include_bias_and_norm: bool = False) -> list[Tensor]:
    """The trainable parameters a penalty or constraint acts on (see the module docstring)."""
    return [
        p for p in model.parameters() if p.requires_grad and (include_bias_and_norm or p.ndim >= 2)
    ]


def _check_probability(**values: float) -> None:
    for name, value in values.items():
        if not 0 <= value < 1:
            raise ValueError(f"{name}={value}: must be in [0, 1)")


class Regularizer:
    """Base class: every hook is a no-op, so an option overrides only the hooks it needs."""

    def attach(self, model: nn.Module) -> None:
        """Called once with the model before training starts."""

    def penalty(self, model: nn.Module) -> Tensor:
        """The term added to the data loss at every step."""
        return torch.zeros(())

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimiser step."""


class _OnWeights(Regularizer):
    """A regulariser acting on :func:`weights`, collected once per model (at attach, or lazily
    on first use) so a step does not walk the module tree."""

    include_bias_and_norm = False
    _model: nn.Module | None = None

    def attach(self, model: nn.Module) -> None:
        self._model = model
        self._params = weights(model, self.include_bias_and_norm)

    def _weights(self, model: nn.Module) -> list[Tensor]:
        if model is not self._model:
            self.attach(model)
        return self._params


class _NormPenalty(_OnWeights):
    """Σ over terms (p, coef) of coef · Σ_w ‖w‖_p^p: one fused ``_foreach_norm`` per term."""

    def __init__(self, terms: dict[int, float], include_bias_and_norm: bool) -> None:
        self.terms = {p: coef for p, coef in terms.items() if coef > 0}
        self.include_bias_and_norm = include_bias_and_norm

    def penalty(self, model: nn.Module) -> Tensor:
        params = self._weights(model)
        if not params or not self.terms:
            return super().penalty(model)
        return sum(
            coef * torch.stack(torch._foreach_norm(params, p)).pow(p).sum()
            for p, coef in self.terms.items()
        )


class L2(_NormPenalty):
    """½ λ Σ w²; its gradient λ w is weight decay with coefficient λ."""

    def __init__(self, weight: float = 5e-4, include_bias_and_norm: bool = False) -> None:
        check_range("weight", weight, 0)
        super().__init__({2: weight / 2}, include_bias_and_norm)


class L1(_NormPenalty):
    """λ Σ |w|: pushes weights to exact zeros (sparse inputs per unit)."""

    def __init__(self, weight: float = 1e-5, include_bias_and_norm: bool = False) -> None:
        check_range("weight", weight, 0)
        super().__init__({1: weight}, include_bias_and_norm)


class Elastic(_NormPenalty):
    """Elastic net: λ₁ Σ |w| + λ₂ Σ w² (no ½ on the squared term, as the text writes it)."""

    def __init__(
        self, l1_weight: float = 1e-5, l2_weight: float = 2.5e-4, include_bias_and_norm: bool = False
    ) -> None:
        check_range("l1_weight", l1_weight, 0)
        check_range("l2_weight", l2_weight, 0)
        super().__init__({1: l1_weight, 2: l2_weight}, include_bias_and_norm)


class MaxNorm(_OnWeights):
    """After every step, rescale each unit's incoming weight vector w to ‖w‖₂ ≤ c.

    A unit is a row of a linear matrix or one filter of a conv layer (dim 0 of the weight).
    ``Tensor.renorm_`` multiplies rows already inside the ball by exactly 1, so they are untouched.
    """

    def __init__(self, c: float = 3.0) -> None:
        if not c > 0:
            raise ValueError(f"c={c}: must be > 0")
        self.c = c

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        for w in self._weights(model):
            w.renorm_(p=2, dim=0, maxnorm=self.c)


class Dropout(Regularizer):
    """Switch on the models' dropout placeholders: ``p`` before every classifier linear layer,
    ``conv_p`` (spatial dropout, whole channels) at the end of every conv block.

    The models build them as ``nn.Dropout(p=0.0)`` and ``nn.Dropout2d(p=0.0)``; like any
    dropout they are identity in eval mode.
    """

    def __init__(self, p: float = 0.5, conv_p: float = 0.0) -> None:
        _check_probability(p=p, conv_p=conv_p)
        self.p, self.conv_p = p, conv_p

    def attach(self, model: nn.Module) -> None:
        for name, kind, p in (("p", nn.Dropout, self.p), ("conv_p", nn.Dropout2d, self.conv_p)):
            layers = [m for m in model.modules() if isinstance(m, kind)]
            if p > 0 and not layers:
                # Silently training without dropout would make the experiment meaningless.
                raise ValueError(f"{name}={p}: the model has no nn.{kind.__name__} placeholder; set {name}=0")
            for layer in layers:
                layer.p = p
