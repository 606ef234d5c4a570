"""Models: shapes, the activation-factory and dropout-placeholder contracts, the text's conv
geometry, named blocks for feature extraction, range checks, and the YAML options."""

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf
from torch import nn

from cnntricks.models import NIN, VGG, Backbone, Plain, ResNet
from cnntricks.models.resnet import BasicBlock

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


class Marker(nn.Module):
    """Stand-in activation: records its channel count and how often it runs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.relu(x)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy CPU the thread hand-offs dominate."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def marker(channels: int) -> Marker:
    return Marker(channels)


# Tiny variants of every model: name -> (builder, {block name: (C, H, W) at 32x32}).
TINY: dict[str, tuple[Callable[..., Backbone], dict[str, tuple[int, int, int]]]] = {
    "vgg": (
        lambda **kw: VGG(width=4, depth=2, stages=3, hidden=8, **kw),
        {"stage1": (4, 16, 16), "stage2": (8, 8, 8), "stage3": (16, 4, 4)},
    ),
    "plain": (
        lambda **kw: Plain(width=4, depth=7, stages=3, **kw),
        {"stage1": (4, 32, 32), "stage2": (8, 16, 16), "stage3": (16, 8, 8)},
    ),
    "nin": (
        lambda **kw: NIN(width=8, depth=3, **kw),
        {"block1": (4, 16, 16), "block2": (8, 8, 8), "block3": (8, 8, 8)},
    ),
    "resnet": (
        lambda **kw: ResNet(width=4, depth=18, **kw),
        {
            "conv1": (4, 32, 32), "layer1": (4, 32, 32), "layer2": (8, 16, 16),
            "layer3": (16, 8, 8), "layer4": (32, 4, 4),
        },
    ),
}
MODELS = list(TINY)

# Every leaf module a model may contain; anything else (nn.ReLU above all) breaks the contract
# that the configured activation is used everywhere.
ALLOWED_LEAVES = (
    nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.Flatten, nn.Dropout, nn.Dropout2d, nn.Identity, Marker,
)


def build(name: str, num_classes: int = 10, **kw) -> Backbone:
    torch.manual_seed(0)
    return TINY[name][0](num_classes=num_classes, act=marker, **kw)


def set_dropout(model: nn.Module, p: float, kinds: tuple[type, ...] = (nn.Dropout, nn.Dropout2d)) -> None:
    for m in model.modules():
        if isinstance(m, kinds):
            m.p = p


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size", [32, 28, 64])
def test_output_shape(name, size):
    model = build(name, num_classes=7, in_channels=1, image_size=size).eval()
    assert model(torch.randn(2, 1, size, size)).shape == (2, 7)


@pytest.mark.parametrize("name", MODELS)
def test_every_nonlinearity_comes_from_the_factory(name):
    model = build(name)
    leaves = [m for m in model.modules() if not list(m.children())]
    assert [type(m).__name__ for m in leaves if not isinstance(m, ALLOWED_LEAVES)] == []
    markers = [m for m in leaves if isinstance(m, Marker)]
    assert markers
    model.train()(torch.randn(2, 3, 32, 32)).sum().backward()
    # One fresh module per call site, each on the forward path exactly once.
    assert [m.calls for m in markers] == [1] * len(markers)
    assert all(p.grad is not None for p in model.parameters())


def test_vgg_factory_gets_channel_counts():
    calls: list[int] = []

    def factory(channels: int) -> Marker:
        calls.append(channels)
        return Marker(channels)

    VGG(num_classes=10, act=factory, width=4, depth=2, stages=3, hidden=8)
    assert calls == [4, 4, 8, 8, 16, 16, 8]


def test_resnet_factory_gets_channel_counts():
    calls: list[int] = []

    def factory(channels: int) -> Marker:
        calls.append(channels)
        return Marker(channels)

    ResNet(num_classes=10, act=factory, width=4, depth=18)
    # Stem, then two activations per BasicBlock, two blocks per stage.
    assert calls == [4] + [4] * 4 + [8] * 4 + [16] * 4 + [32] * 4


def test_vgg_follows_the_texts_geometry():
    model = build("vgg", batch_norm=True).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6
    for conv in convs:
        assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (1, 1), (1, 1))
        assert conv.bias is None  # batch norm follows
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all((p.kernel_size, p.stride) == (2, 2) for p in pools)
    sizes: list[tuple[torch.Size, torch.Size]] = []
    for conv in convs:
        conv.register_forward_hook(lambda m, args, out: sizes.append((args[0].shape[-2:], out.shape[-2:])))
    model(torch.randn(1, 3, 32, 32))
    assert all(before == after for before, after in sizes)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in build("vgg", batch_norm=False).modules())


@pytest.mark.parametrize("depth,per_stage", [(3, [1, 1, 1]), (7, [3, 2, 2]), (20, [7, 7, 6])])
def test_plain_depth_and_no_batch_norm(depth, per_stage):
    model = Plain(num_classes=10, act=marker, width=2, depth=depth, stages=3)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    counts = [sum(isinstance(m, nn.Conv2d) for m in block.modules()) for block in model.blocks.values()]
    assert counts == per_stage
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all((c.kernel_size, c.stride, c.padding) == ((3, 3), (1, 1), (1, 1)) for c in convs)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_nin_is_the_original_at_width_192():
    model = NIN(num_classes=10, act=marker, width=192, depth=3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size[0], c.out_channels) for c in convs] == [
        (5, 192), (1, 160), (1, 96), (5, 192), (1, 192), (1, 192), (3, 192), (1, 192), (1, 10)
    ]
    assert not any(isinstance(m, nn.Linear) for m in model.modules())


def test_resnet34_blocks():
    model = ResNet(num_classes=10, act=marker, width=2, depth=34)
    counts = [sum(isinstance(m, BasicBlock) for m in model.blocks[f"layer{i}"].modules()) for i in range(1, 5)]
    assert counts == [3, 4, 6, 3]


@pytest.mark.parametrize("name", MODELS)
def test_dropout_placeholders_are_on_the_path(name):
    model = build(name)
    x = torch.randn(4, 3, 32, 32)
    reference = model.eval()(x)
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, (nn.Dropout, nn.Dropout2d)))
    # Eval mode ignores p (checked first: train-mode passes update batch-norm statistics).
    set_dropout(model, 1.0)
    torch.testing.assert_close(model(x), reference)
    set_dropout(model, 0.0)

    # Every named block ends with a spatial-dropout placeholder that really gates its output.
    for block_name, block in model.blocks.items():
        assert isinstance(block[-1], nn.Dropout2d)
        block[-1].p = 1.0
        assert model.train().features(x, upto=block_name).abs().sum() == 0
        block[-1].p = 0.0

    # Every Linear of the classifier sits right behind a Dropout: with p=1 its input is zero.
    linear_inputs: list[torch.Tensor] = []
    for i, m in enumerate(model.head):
        if isinstance(m, nn.Linear):
            assert isinstance(model.head[i - 1], nn.Dropout)
            m.register_forward_pre_hook(lambda mod, args: linear_inputs.append(args[0]))
    set_dropout(model, 1.0, (nn.Dropout,))
    model.train()(x)
    assert len(linear_inputs) == sum(isinstance(m, nn.Linear) for m in model.modules())
    assert all(t.abs().sum() == 0 for t in linear_inputs)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size", [32, 64])
def test_features_of_every_block(name, size):
    model = build(name, image_size=size).eval()
    x = torch.randn(2, 3, size, size)
    expected = TINY[name][1]
    assert list(model.blocks) == list(expected)
    scale = size // 32
    for block_name, (c, h, w) in expected.items():
        assert model.features(x, upto=block_name).shape == (2, c, h * scale, w * scale)
    torch.testing.assert_close(model.features(x), model.features(x, upto=list(expected)[-1]))
    torch.testing.assert_close(model.head(model.features(x)), model(x))
    with pytest.raises(ValueError, match="upto='nope': must be one of"):
        model.features(x, upto="nope")


@pytest.mark.parametrize(
    "cls,kwargs,message",
    [
        (VGG, {"width": 0}, "width=0: must be >= 1"),
        (VGG, {"depth": 0}, "depth=0: must be >= 1"),
        (VGG, {"hidden": 0}, "hidden=0: must be >= 1"),
        (VGG, {"stages": 6}, "stages=6: must be <= 5"),
        (Plain, {"width": 0}, "width=0: must be >= 1"),
        (Plain, {"depth": 2, "stages": 3}, r"depth=2: must be >= stages \(3\)"),
        (Plain, {"stages": 0}, "stages=0: must be >= 1"),
        (NIN, {"width": 0}, "width=0: must be >= 1"),
        (NIN, {"depth": 0}, "depth=0: must be >= 1"),
        (ResNet, {"width": 0}, "width=0: must be >= 1"),
        (ResNet, {"depth": 50}, "depth=50: accepted values: 18, 34"),
    ],
)
def test_bad_sizes_raise_one_line_value_errors(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(num_classes=10, act=marker, **kwargs)


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_yaml_options_match_the_constructor_defaults(path):
    node = OmegaConf.to_container(OmegaConf.load(path))
    cls = get_class(node.pop("_target_"))
    params = inspect.signature(cls).parameters
    assert {"width", "depth"} <= node.keys()
    for key, value in node.items():
        assert params[key].default == value, key
        assert params[key].annotation in (int, float, bool, str), key
    runtime = {"num_classes", "act", "in_channels", "image_size"}
    assert set(params) == set(node) | runtime  # every option is in the YAML, no runtime one is


def test_yaml_options_cover_the_models():
    targets = {OmegaConf.load(p)._target_ for p in CONF.glob("*.yaml")}
    assert targets == {f"cnntricks.models.{c.__name__}" for c in (VGG, Plain, NIN, ResNet)}
