"""Dead-unit monitor: which ReLU-family units never fire over a whole evaluation pass.

A unit is one channel of a conv activation or one feature of a linear activation. It is dead
when its output was never positive on any input of the recorded pass; for leaky variants that
means the pre-activation was never positive either. The text warns that a too-high learning rate
can kill a large part of a ReLU network this way, irreversibly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from cnntricks.act import RELU_FAMILY


class DeadUnitMonitor:
    """Use as ``with monitor.recording(): <forward passes>``, then read :meth:`fractions`.

    Hooks exist only inside ``recording()``, so training steps pay nothing. Each hooked call
    reduces its output to a per-channel running max (one ``amax``); nothing else is stored.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = {
            name: module for name, module in model.named_modules() if isinstance(module, RELU_FAMILY)
        }
        self._max: dict[str, Tensor] = {}

    @contextmanager
    def recording(self) -> Iterator[DeadUnitMonitor]:
        """Record the forward passes run inside the block (a fresh record each time)."""
        self._max = {}
        handles = [
            layer.register_forward_hook(self._hook(name)) for name, layer in self.layers.items()
        ]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            # Channels are dim 1 for both [B, C, H, W] and [B, F]; reduce over all the others.
            batch_max = output.detach().amax(dim=[d for d in range(output.ndim) if d != 1])
            seen = self._max.get(name)
            self._max[name] = batch_max if seen is None else seen.maximum(batch_max)

        return hook

    def fractions(self) -> dict[str, float]:
        """``{"dead/<layer>": fraction, ..., "dead/all": fraction over all units}`` of the
        last recording; empty when nothing ReLU-like ran."""
        if not self._max:
            return {}
        dead = {name: (peak <= 0) for name, peak in self._max.items()}
        result = {f"dead/{name}": mask.float().mean().item() for name, mask in dead.items()}
        total = sum(mask.numel() for mask in dead.values())
        result["dead/all"] = sum(mask.sum().item() for mask in dead.values()) / total
        return result
