"""Augmentation options: the math of each option, batch semantics, pipeline, caching and errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from omegaconf import OmegaConf
from torchvision.transforms import v2

from cnntricks.augment import (
    HSV,
    Augment,
    ColorJitter,
    Crop,
    FancyPCA,
    Flip,
    ResizedCrop,
    RotateScale,
    build_augment,
    hsv_to_rgb,
    rgb_to_hsv,
)
from cnntricks.config import ConfigError, check_config, group_options
from cnntricks.data import Split

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]

# Every option with its YAML defaults; FancyPCA with fitted-looking statistics so it does something.
OPTIONS = {
    "flip": Flip,
    "crop": Crop,
    "resized_crop": ResizedCrop,
    "color_jitter": ColorJitter,
    "hsv": HSV,
    "rotate_scale": RotateScale,
    "fancy_pca": lambda: _fitted_pca(),
}


def _fitted_pca(std: float = 0.1) -> FancyPCA:
    pca = FancyPCA(std=std)
    pca.load_stats({"eigenvalues": [0.05, 0.01, 0.002], "eigenvectors": _rotation().tolist()})
    return pca


def _rotation() -> torch.Tensor:
    """A fixed orthonormal 3x3 basis (not axis-aligned, so mistakes in P show)."""
    q, _ = torch.linalg.qr(torch.tensor([[1.0, 0.4, -0.3], [0.2, 1.0, 0.5], [-0.6, 0.1, 1.0]]))
    return q


def _images(n: int = 16, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


# --- the math of each option ---------------------------------------------------------------------


def test_flip_is_an_exact_mirror():
    images = _images()
    assert torch.equal(Flip(p=1.0)(images), images.flip(-1))
    assert torch.equal(Flip(p=0.0)(images), images)
    out = Flip(p=0.5)(images)
    for original, flipped in zip(images, out):
        assert torch.equal(flipped, original) or torch.equal(flipped, original.flip(-1))


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
@pytest.mark.parametrize(("padding", "size"), [(4, None), (3, 10), (0, 12)])
def test_crop_equals_padding_then_cropping(mode, padding, size):
    images = _images(12, 16)
    crop = Crop(padding=padding, padding_mode=mode, size=size)
    out = size or 16
    top = torch.randint(0, 16 + 2 * padding - out + 1, (12,))
    left = torch.randint(0, 16 + 2 * padding - out + 1, (12,))
    padded = TF.pad(images, [padding], padding_mode=mode)
    expected = torch.stack([TF.crop(padded[i], int(top[i]), int(left[i]), out, out) for i in range(12)])
    assert torch.equal(crop.crop(images, top, left, (out, out)), expected)


def test_crop_windows_stay_within_the_padding():
    images = torch.arange(16.0).repeat(16, 1)[None, None].expand(64, 3, -1, -1).contiguous() / 15  # value = column
    out = Crop(padding=2, padding_mode="edge")(images)
    shift = (out[:, 0, 0, 8] - images[:, 0, 0, 8]) * 15  # each row is a shifted ramp
    assert set(shift.round().tolist()) <= {-2.0, -1.0, 0.0, 1.0, 2.0}


def test_hsv_identity_parameters_leave_images_unchanged():
    identity = HSV(power=[1.0, 1.0], scale=[1.0, 1.0], offset=[0.0, 0.0], hue=[0.0, 0.0])
    images = torch.rand(8, 3, 16, 16)
    images[0] = 0.5  # grey: no hue
    images[1] = 0.0  # black: no saturation
    assert torch.allclose(identity(images), images, atol=1e-6)
    uint8 = _images()
    assert torch.equal(identity(uint8), uint8)


def test_hsv_applies_the_recipe_to_s_and_v():
    hsv = HSV(power=[2.0, 2.0], scale=[1.2, 1.2], offset=[0.05, 0.05], hue=[0.0, 0.0])
    images = torch.rand(4, 3, 8, 8)
    before, after = rgb_to_hsv(images), rgb_to_hsv(hsv(images))
    expected = (before[:, 1:] ** 2 * 1.2 + 0.05).clamp(0, 1)
    assert torch.allclose(after[:, 1:], expected, atol=1e-5)
    hue_kept = before[:, 1] > 0.05  # hue is only defined (and kept) where there is saturation
    assert torch.allclose(after[:, 0][hue_kept], before[:, 0][hue_kept], atol=1e-4)


def test_hsv_hue_shift_matches_torchvision():
    images = torch.rand(4, 3, 8, 8)
    shifted = HSV(power=[1.0, 1.0], scale=[1.0, 1.0], offset=[0.0, 0.0], hue=[0.1, 0.1])(images)
    assert torch.allclose(shifted, TF.adjust_hue(images, 0.1), atol=1e-5)


def test_hsv_parameters_lie_in_their_ranges():
    hsv = HSV()
    params = hsv.sample(20000, torch.device("cpu"))
    for name, (low, high) in {"power": hsv.power, "scale": hsv.scale, "offset": hsv.offset, "hue": hsv.hue}.items():
        assert params[name].min() >= low and params[name].max() <= high, name
        assert params[name].max() - params[name].min() > 0.9 * (high - low), name  # the range is used
    # Log-uniform powers: as many below 1 as above (1/4 and 4 equally likely).
    assert abs((params["power"] < 1).float().mean().item() - 0.5) < 0.02


def test_rgb_hsv_round_trip_and_edge_cases():
    images = torch.rand(8, 3, 16, 16)
    images[0], images[1], images[2, :, 0, 0] = 0.0, 1.0, torch.tensor([0.3, 0.3, 0.7])
    hsv = rgb_to_hsv(images)
    assert not hsv.isnan().any() and hsv.min() >= 0 and hsv.max() <= 1
    assert torch.allclose(hsv_to_rgb(hsv), images, atol=1e-6)


def test_color_jitter_matches_torchvision_per_image():
    images = torch.rand(6, 3, 16, 16)
    factors = {name: 0.6 + 0.8 * torch.rand(6) for name in ("brightness", "contrast", "saturation")}
    shift = 0.4 * torch.rand(6) - 0.2
    out = ColorJitter.adjust(images.clone(), shift=shift, **factors)
    for i in range(6):
        expected = TF.adjust_brightness(images[i], float(factors["brightness"][i]))
        expected = TF.adjust_contrast(expected, float(factors["contrast"][i]))
        expected = TF.adjust_saturation(expected, float(factors["saturation"][i]))
        expected = TF.adjust_hue(expected, float(shift[i]))
        assert torch.allclose(out[i], expected, atol=1e-5)


@pytest.mark.parametrize(("height", "width"), [(32, 32), (24, 40)])
def test_rotate_scale_matches_torchvision_affine(height, width):
    images = torch.nn.functional.avg_pool2d(torch.rand(2, 3, height, width), 5, 1, 2)
    warp = RotateScale(degrees=[30.0, 30.0], scale=[1.2, 1.2], padding_mode="constant")(images)
    # torchvision's affine angle turns clockwise; ours (like TF.rotate) counter-clockwise.
    expected = TF.affine(images, angle=-30.0, translate=[0, 0], scale=1.2, shear=[0.0, 0.0],
                         interpolation=TF.InterpolationMode.BILINEAR)
    inner = (..., slice(height // 4, -height // 4), slice(width // 4, -width // 4))
    assert torch.allclose(warp[inner], expected[inner], atol=1e-5)
    identity = RotateScale(degrees=[0.0, 0.0], scale=[1.0, 1.0])
    assert torch.allclose(identity(images), images, atol=1e-6)


def test_resized_crop_of_the_whole_image_is_the_identity():
    images = _images()
    whole = ResizedCrop(scale=[1.0, 1.0], ratio=[1.0, 1.0])
    assert torch.equal(whole(images), images)
    assert ResizedCrop(size=8)(images).shape == (16, 3, 8, 8)


# --- fancy PCA ------------------------------------------------------------------------------------


def test_fancy_pca_recovers_the_eigen_statistics_of_known_data():
    eigenvectors, eigenvalues = _rotation(), torch.tensor([0.02, 0.005, 0.001])
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(400 * 16 * 16, 3, generator=generator) * eigenvalues.sqrt()
    pixels = (0.5 + noise @ eigenvectors.T).clamp(0, 1)
    images = (pixels * 255).round().to(torch.uint8).view(400, 16, 16, 3).permute(0, 3, 1, 2).contiguous()
    pca = FancyPCA().fit(images)
    assert torch.allclose(pca.eigenvalues, eigenvalues, rtol=0.03)
    alignment = (pca.eigenvectors * eigenvectors).sum(dim=0).abs()  # |cos| of matching eigenvectors
    assert alignment.min() > 0.999


def test_fancy_pca_shift_covariance_is_p_diag_sigma2_lambda2_pt():
    pca = _fitted_pca(std=0.1)
    grey = torch.full((40000, 3, 2, 2), 0.5)
    shifts = pca(grey) - grey
    assert torch.allclose(shifts, shifts[:, :, :1, :1].expand_as(shifts), atol=1e-6)  # one shift per image
    shifts = shifts[:, :, 0, 0].double()
    p, lam = pca.eigenvectors.double(), pca.eigenvalues.double()
    expected = p @ torch.diag((0.1 * lam) ** 2) @ p.T
    assert torch.allclose(torch.cov(shifts.T), expected, atol=0.03 * expected.abs().max().item())
    assert shifts.mean(dim=0).abs().max() < 4 * 0.1 * 0.05 / math.sqrt(40000)


def test_fancy_pca_statistics_are_cached_written_and_reused(tmp_path, monkeypatch):
    split = Split(_images(20), torch.arange(20) % 2)
    cfg = OmegaConf.create({"fancy_pca": {"_target_": "cnntricks.augment.FancyPCA", "std": 0.1}})
    first = build_augment(cfg, split, run_dir=tmp_path, cache_dir=tmp_path / "cache")
    written = json.loads((tmp_path / "fancy_pca.json").read_text())
    assert torch.allclose(torch.tensor(written["eigenvalues"]), first.options["fancy_pca"].eigenvalues)
    assert len(list((tmp_path / "cache").iterdir())) == 1

    def refit(self, images):
        raise AssertionError("statistics recomputed despite the cache")

    monkeypatch.setattr(FancyPCA, "fit", refit)
    second = build_augment(cfg, split, run_dir=None, cache_dir=tmp_path / "cache")
    assert torch.equal(second.options["fancy_pca"].eigenvectors, first.options["fancy_pca"].eigenvectors)


# --- batch semantics, shared by every option ---------------------------------------------------


@pytest.mark.parametrize("name", OPTIONS)
def test_random_parameters_are_independent_per_image(name):
    torch.manual_seed(0)
    same = _images(1, 16).expand(64, -1, -1, -1) / 255
    distinct = len({tuple(image.flatten().tolist()) for image in OPTIONS[name]()(same)})
    if name == "flip":
        assert distinct == 2
    elif name == "crop":  # 81 offsets for 4 pixels of padding: about 44 distinct in 64 draws
        assert distinct > 30
    else:  # continuous parameters: every image differs
        assert distinct == 64


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("name", OPTIONS)
def test_dtype_range_and_device_are_preserved(name, dtype, device):
    images = _images(8).to(device)
    images = images if dtype == torch.uint8 else images.to(dtype) / 255
    option = OPTIONS[name]()
    out = option(images)
    assert out.dtype == dtype and out.device == images.device and out.shape == images.shape
    if dtype != torch.uint8:
        assert out.min() >= 0 and out.max() <= 1
    single = option(images[0])
    assert single.shape == images[0].shape and single.dtype == dtype


@pytest.mark.parametrize("name", OPTIONS)
def test_constant_images_give_no_nan(name):
    images = torch.cat([torch.zeros(4, 3, 8, 8), torch.ones(4, 3, 8, 8), torch.full((4, 3, 8, 8), 0.3)])
    assert not OPTIONS[name]()(images).isnan().any()
    pca = FancyPCA().fit(torch.full((4, 3, 8, 8), 77, dtype=torch.uint8))
    assert pca.eigenvalues.max() < 1e-12 and not pca(images).isnan().any()


def test_options_work_inside_torchvision_compose_and_follow_the_global_seed():
    pipeline = v2.Compose([Flip(), Crop(), v2.ToDtype(torch.float32, scale=True), HSV(), ColorJitter()])
    image = _images(1)[0]
    torch.manual_seed(3)
    first = pipeline(image)
    torch.manual_seed(3)
    assert first.shape == (3, 16, 16) and torch.equal(pipeline(image), first)


# --- pipeline, minority crops, errors -------------------------------------------------------------


def test_build_augment_keeps_the_listed_order_and_is_none_when_empty():
    split = Split(_images(10), torch.arange(10) % 2)
    cfg = OmegaConf.create({
        "hsv": {"_target_": "cnntricks.augment.HSV"},
        "flip": {"_target_": "cnntricks.augment.Flip", "p": 0.5},
    })
    assert list(build_augment(cfg, split, None, None).options) == ["hsv", "flip"]
    assert build_augment(OmegaConf.create({}), split, None, None) is None


def test_minority_only_crops_are_appended_for_small_classes_only():
    labels = torch.tensor([0] * 90 + [1] * 10)
    augment = Augment({"crop": Crop(minority_only=True)}, torch.bincount(labels))
    torch.manual_seed(0)
    images = _images(100)
    out, out_labels = augment(images, labels)
    assert torch.equal(out[:100], images)  # the batch itself is untouched
    assert out_labels[100:].eq(1).all()
    assert len(out_labels) == 100 + 10 * 8  # 90 / 10 - 1 extra crops per minority image
    # Fractional rates: 3 extra on average per minority image.
    augment = Augment({"crop": Crop(minority_only=True)}, torch.tensor([40, 10]))
    many = torch.ones(4000, dtype=torch.long)
    _, out_labels = augment(torch.zeros(4000, 3, 8, 8, dtype=torch.uint8), many)
    assert len(out_labels) == 4000 + 3 * 4000


def test_group_wide_minority_flag_applies_to_crop_type_options():
    split = Split(_images(20), torch.tensor([0] * 15 + [1] * 5))
    cfg = OmegaConf.create({
        "flip": {"_target_": "cnntricks.augment.Flip"},
        "crop": {"_target_": "cnntricks.augment.Crop"},
        "minority_only": True,
    })
    augment = build_augment(cfg, split, None, None)
    assert augment.options["crop"].minority_only and not augment.options["flip"].minority_only
    with pytest.raises(ConfigError, match="needs a crop-type option"):
        no_crop = {"flip": {"_target_": "cnntricks.augment.Flip"}, "minority_only": True}
        build_augment(OmegaConf.create(no_crop), split, None, None)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (lambda: HSV(power=[4.0, 0.25]), r"power=\[4.0, 0.25\]: low must be <= high"),
        (lambda: HSV(power=[0.0, 4.0]), r"power=\[0.0, 4.0\]: must be > 0"),
        (lambda: Flip(p=1.5), r"p=1.5: must lie in \[0.0, 1.0\]"),
        (lambda: Crop(padding_mode="wrap"), "padding_mode=wrap: accepted values"),
        (lambda: ColorJitter(hue=0.7), r"hue=0.7: must lie in \[0.0, 0.5\]"),
        (lambda: FancyPCA(std=-1.0), "std=-1.0: must be >= 0.0"),
    ],
)
def test_bad_parameters_raise_one_line_value_errors(option, message):
    with pytest.raises(ValueError, match=message):
        option()


def test_crop_larger_than_the_image_names_the_option():
    split = Split(_images(4, 32), torch.zeros(4, dtype=torch.long))
    cfg = OmegaConf.create({"crop": {"_target_": "cnntricks.augment.Crop", "size": 40}})
    with pytest.raises(ConfigError, match=r"^aug.crop: size=40: larger than the 32x32 image$"):
        build_augment(cfg, split, None, None)


def test_config_group_composes_in_order_with_overrides(make_cfg):
    cfg = make_cfg("+aug=[flip,crop,hsv,fancy_pca]", "aug.hsv.power=[0.5,2.0]")
    assert list(group_options(cfg.aug)) == ["flip", "crop", "hsv", "fancy_pca"]
    assert list(cfg.aug.hsv.power) == [0.5, 2.0]
    with pytest.raises(ConfigError, match=r"aug.hsv: power=\[4.0, 0.25\]: low must be <= high"):
        check_config(make_cfg("+aug=hsv", "aug.hsv.power=[4.0,0.25]"))


def test_show_aug_writes_a_grid_of_originals_and_augmented_rows(make_cfg, tmp_path):
    from PIL import Image

    from cnntricks.show_aug import show_aug

    path = show_aug(make_cfg("+aug=[flip,crop,hsv]"), tmp_path / "grid.png", n_images=4, n_rows=2)
    width, height = Image.open(path).size
    assert (width, height) == (3 * (4 * 34 + 2), 3 * (3 * 34 + 2))  # 32-px cells + 2-px gaps, enlarged 3x
    with pytest.raises(ConfigError, match="no option chosen"):
        show_aug(make_cfg(), tmp_path / "empty.png")
