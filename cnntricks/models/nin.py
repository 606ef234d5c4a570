"""Network in Network (Lin et al., 2014), the CIFAR architecture of the activation study the
text cites (Xu et al., 2015, Sec. 5): mlpconv blocks (a kxk conv followed by two 1x1 convs, each
followed by the activation), 3x3 stride-2 pooling (max, then average) between blocks, and a
classifier made of a 1x1 conv with one map per class plus global average pooling.

At width=192, depth=3 this is the original: 5x5-192, 1x1-160, 1x1-96, max pool, 5x5-192,
1x1-192, 1x1-192, avg pool, 3x3-192, 1x1-192, 1x1-num_classes, global average pool.

Deviation: the original also applies the activation to the class maps; here they stay linear
(they are the logits), so bounded activations (sigmoid, tanh) do not squash the logits.

Dropout: the head has no Linear layer, so the dropout regulariser's classifier option has
nothing to act on; its conv-block option sets the Dropout2d that ends every block, which in
blocks 1..depth-1 sits exactly where the original puts its dropout (after the pooling).
"""

from collections import OrderedDict

from torch import nn

from cnntricks.act import ActFactory
from cnntricks.checks import check_range
from cnntricks.models.common import Backbone, ConvNormAct

_ORIGINAL_WIDTH = 192


class NIN(Backbone):
    """`depth` mlpconv blocks "block1".."block<depth>"; `width` scales the original's 192 channels.

    The last block's third 1x1 conv (num_classes maps) is the head, so `features()` ends at a
    class-agnostic representation and fine-tuning can replace the head alone.
    """

    def __init__(
        self,
        num_classes: int,
        act: ActFactory,
        width: int = 64,
        depth: int = 3,
        batch_norm: bool = False,
        in_channels: int = 3,
        image_size: int = 32,  # unused: padded pooling and global pooling accept any size
    ) -> None:
        super().__init__()
        check_range("width", width, 1)
        check_range("depth", depth, 1)

        def scaled(original: int) -> int:
            return max(1, round(original * width / _ORIGINAL_WIDTH))

        self.blocks = nn.ModuleDict()
        channels = in_channels
        for i in range(depth):
            last = i == depth - 1
            if last:  # its third conv, with one map per class, is the head
                widths = [width, width]
            elif i == 0:  # the original narrows its first block: 192, 160, 96
                widths = [width, scaled(160), scaled(96)]
            else:
                widths = [width] * 3
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            for j, out in enumerate(widths):
                kernel = (3 if last else 5) if j == 0 else 1
                layers[f"conv{j + 1}"] = ConvNormAct(channels, out, act, kernel, batch_norm=batch_norm)
                channels = out
            if not last:
                pool = nn.MaxPool2d if i == 0 else nn.AvgPool2d
                layers["pool"] = pool(3, stride=2, padding=1)
            layers["drop"] = nn.Dropout2d(p=0.0)  # no-op until the dropout regulariser sets p
            self.blocks[f"block{i + 1}"] = nn.Sequential(layers)
        self.head = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(channels, num_classes, 1),
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
            )
        )
