"""Pieces shared by every model: the conv-norm-act unit, range checks, and the `Backbone` base
class that gives all models the same `blocks`/`head`/`features` interface (fine-tuning, feature
extraction and early fusion rely on it)."""

from torch import Tensor, nn

from cnntricks.act import ActFactory


class ConvNormAct(nn.Sequential):
    """Conv2d ("same" zero padding for odd kernels), optional BatchNorm, optional activation.

    Children are named `conv`, `bn`, `act` so that hooks and logs (dead-unit monitor) get
    readable layer names.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        act: ActFactory | None,
        kernel_size: int = 3,
        stride: int = 1,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        # A conv bias is redundant in front of BatchNorm (its shift cancels it).
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=not batch_norm
        )
        if batch_norm:
            self.bn = nn.BatchNorm2d(out_channels)
        if act is not None:
            self.act = act(out_channels)


class Backbone(nn.Module):
    """Base class: subclasses fill `self.blocks` (named stages, input to output) and `self.head`."""

    blocks: nn.ModuleDict
    head: nn.Module

    def features(self, x: Tensor, upto: str | None = None) -> Tensor:
        """Output of block `upto` (None: the last block, i.e. the head's input)."""
        if upto is not None and upto not in self.blocks:
            raise ValueError(f"upto={upto!r}: must be one of {', '.join(self.blocks)}")
        for name, block in self.blocks.items():
            x = block(x)
            if name == upto:
                break
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
