"""Deep plain conv net without batch norm or shortcuts, for the initialisation experiments
(Sec. 3): with nothing to rescue the signal, only a good initialisation lets a deep stack train."""

from collections import OrderedDict

from torch import nn

from cnntricks.act import ActFactory
from cnntricks.checks import check_range
from cnntricks.models.common import Backbone, ConvNormAct


class Plain(Backbone):
    """`depth` 3x3 conv layers spread as evenly as possible over `stages` stages (earlier stages
    take the remainder), 2x2 max pooling between stages, channels `width * 2**i`, then global
    average pooling and one Linear layer.

    Blocks: "stage1".."stage<stages>"; head: global average pool, flatten, Linear(num_classes).
    """

    def __init__(
        self,
        num_classes: int,
        act: ActFactory,
        width: int = 16,
        depth: int = 20,
        stages: int = 3,
        in_channels: int = 3,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        check_range("width", width, 1)
        check_range("stages", stages, 1)
        if depth < stages:  # every stage needs at least one conv
            raise ValueError(f"depth={depth}: must be >= stages ({stages})")
        if image_size // 2 ** (stages - 1) < 1:
            raise ValueError(
                f"stages={stages}: must be <= {image_size.bit_length()} for image_size={image_size}"
            )
        self.blocks = nn.ModuleDict()
        channels = in_channels
        for i in range(stages):
            out = width * 2**i
            n_convs = depth // stages + (i < depth % stages)
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            if i > 0:  # pool on entry, so the last stage feeds global pooling at full resolution
                layers["pool"] = nn.MaxPool2d(2)
            for j in range(n_convs):
                layers[f"conv{j + 1}"] = ConvNormAct(channels if j == 0 else out, out, act)
            layers["drop"] = nn.Dropout2d(p=0.0)  # no-op until the dropout regulariser sets p
            self.blocks[f"stage{i + 1}"] = nn.Sequential(layers)
            channels = out
        self.head = nn.Sequential(
            OrderedDict(
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                drop=nn.Dropout(p=0.0),  # no-op until the dropout regulariser sets p
                fc=nn.Linear(channels, num_classes),
            )
        )
