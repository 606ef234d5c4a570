"""ResNet for small images (He et al., 2016; the common CIFAR variant): a 3x3 stride-1 stem
without max pooling, four stages of BasicBlocks with widths w, 2w, 4w, 8w (stride 2 from the
second stage on), global average pooling and one Linear layer."""

from collections import OrderedDict

from torch import Tensor, nn

from cnntricks.act import ActFactory
from cnntricks.checks import check_choice, check_range
from cnntricks.models.common import Backbone, ConvNormAct

_BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (1x1 conv-BN projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, act: ActFactory) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, out_channels, act, stride=stride, batch_norm=True)
        self.conv2 = ConvNormAct(out_channels, out_channels, None, batch_norm=True)
        self.shortcut = (
            ConvNormAct(in_channels, out_channels, None, kernel_size=1, stride=stride, batch_norm=True)
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )
        self.act = act(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNet(Backbone):
    """ResNet-18 or -34 (`depth`). Blocks: "conv1" (stem), "layer1".."layer4"; head: global
    average pool, flatten, Linear(num_classes)."""

    def __init__(
        self,
        num_classes: int,
        act: ActFactory,
        width: int = 64,
        depth: int = 18,
        in_channels: int = 3,
        image_size: int = 32,  # unused: strided convs and global pooling accept any size
    ) -> None:
        super().__init__()
        check_range("width", width, 1)
        check_choice("depth", depth, _BLOCKS_PER_STAGE)
        self.blocks = nn.ModuleDict()
        self.blocks["conv1"] = nn.Sequential(
            OrderedDict(
                conv=ConvNormAct(in_channels, width, act, batch_norm=True),
                drop=nn.Dropout2d(p=0.0),  # no-op until the dropout regulariser sets p
            )
        )
        channels = width
        for i, n_blocks in enumerate(_BLOCKS_PER_STAGE[depth]):
            out = width * 2**i
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            for j in range(n_blocks):
                # The first block of stages 2-4 halves the resolution.
                stride = 2 if i > 0 and j == 0 else 1
                layers[str(j)] = BasicBlock(channels, out, stride, act)
                channels = out
            layers["drop"] = nn.Dropout2d(p=0.0)  # no-op until the dropout regulariser sets p
            self.blocks[f"layer{i + 1}"] = nn.Sequential(layers)
        self.head = nn.Sequential(
            OrderedDict(
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                drop=nn.Dropout(p=0.0),  # no-op until the dropout regulariser sets p
                fc=nn.Linear(channels, num_classes),
            )
        )
