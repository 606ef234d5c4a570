"""VGG-style network following the text's advice (Sec. 4): 3x3 convolutions with stride 1 and
zero padding (spatial size preserved), 2x2 max pooling after each stage, channels doubling per
stage, and a two-layer fully connected classifier."""

from collections import OrderedDict

from torch import nn

from cnntricks.act import ActFactory
from cnntricks.checks import check_range
from cnntricks.models.common import Backbone, ConvNormAct


class VGG(Backbone):
    """`stages` stages of `depth` conv layers; stage i has `width * 2**i` channels.

    Blocks: "stage1".."stage<stages>"; head: flatten, Linear(hidden), act, Linear(num_classes).
    """

    def __init__(
        self,
        num_classes: int,
        act: ActFactory,
        width: int = 32,
        depth: int = 2,
        stages: int = 3,
        batch_norm: bool = True,
        hidden: int = 256,
        in_channels: int = 3,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        check_range("width", width, 1)
        check_range("depth", depth, 1)
        check_range("stages", stages, 1)
        check_range("hidden", hidden, 1)
        side = image_size // 2**stages  # each 2x2 pool floors the side
        if side < 1:
            raise ValueError(
                f"stages={stages}: must be <= {image_size.bit_length() - 1} for image_size={image_size}"
            )
        self.blocks = nn.ModuleDict()
        channels = in_channels
        for i in range(stages):
            out = width * 2**i
            layers: OrderedDict[str, nn.Module] = OrderedDict(
                (f"conv{j + 1}", ConvNormAct(channels if j == 0 else out, out, act, batch_norm=batch_norm))
                for j in range(depth)
            )
            layers["pool"] = nn.MaxPool2d(2)
            layers["drop"] = nn.Dropout2d(p=0.0)  # no-op until the dropout regulariser sets p
            self.blocks[f"stage{i + 1}"] = nn.Sequential(layers)
            channels = out
        # Dropout placeholders are no-ops until the dropout regulariser sets p.
        self.head = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                drop1=nn.Dropout(p=0.0),
                fc1=nn.Linear(channels * side * side, hidden),
                act=act(hidden),
                drop2=nn.Dropout(p=0.0),
                fc2=nn.Linear(hidden, num_classes),
            )
        )
