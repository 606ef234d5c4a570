"""The model zoo: every class is a `Backbone` (named `blocks`, a `head`, `features(x, upto)`)
built as `Model(num_classes=..., act=..., in_channels=..., image_size=..., **yaml_params)`."""

from cnntricks.models.common import Backbone
from cnntricks.models.nin import NIN
from cnntricks.models.plain import Plain
from cnntricks.models.resnet import ResNet
from cnntricks.models.vgg import VGG

__all__ = ["Backbone", "NIN", "Plain", "ResNet", "VGG"]
