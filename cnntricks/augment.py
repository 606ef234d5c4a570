"""Data augmentation, Sec. 1 of the text: the multi-select `aug` config group.

Every option is an `nn.Module` whose `forward(images)` transforms a whole batch [B, C, H, W] at
once, uint8 or float in [0, 1], on whatever device it lives on, with its own random parameters for
every image (drawn with torch's RNG on that device, so a global seed makes runs reproducible). A
single [C, H, W] image works too, so an option can sit in a `torchvision.transforms.v2.Compose`.
The output keeps the input's dtype, value range and device. Per-image parameters replace
torchvision's one-image-at-a-time transforms: on a CPU that is what keeps augmentation from
dominating the training time (see scripts/bench_augment.py).

`build_augment` turns `cfg.aug` into an `Augment` pipeline that applies the options in the order
they were listed. Crop-type options can instead add extra crops of the minority classes only
(`minority_only`, the text's remedy for class imbalance), which is why `Augment` also takes labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torchvision.utils import make_grid

from cnntricks.checks import check_choice, check_interval, check_range
from cnntricks.files import atomic_write_json

__all__ = [
    "BatchAugment",
    "Flip",
    "Crop",
    "ResizedCrop",
    "ColorJitter",
    "HSV",
    "RotateScale",
    "FancyPCA",
    "Augment",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "split_aug_config",
    "build_augment",
]

log = logging.getLogger(__name__)

# The group-wide spelling `aug.minority_only=true`: a flag in the `aug` mapping, not an option.
GROUP_FLAG = "minority_only"
# Padding modes: torchvision's names; warps map them onto grid_sample's.
CROP_PADDING = ("constant", "edge", "reflect", "symmetric")
WARP_PADDING = {"constant": "zeros", "edge": "border", "symmetric": "reflection"}


# --- parameter checks and per-image draws ---------------------------------------------------------


def _uniform(interval: tuple[float, float], n: int, device: torch.device) -> Tensor:
    """`n` independent draws from U[low, high] (float32, on `device`)."""
    low, high = interval
    return low + (high - low) * torch.rand(n, device=device)


def _log_uniform(interval: tuple[float, float], n: int, device: torch.device) -> Tensor:
    """Draws whose logarithm is uniform: factors f and 1/f equally likely (e.g. powers in [1/4, 4])."""
    return _uniform((math.log(interval[0]), math.log(interval[1])), n, device).exp()


def _per_image(values: Tensor) -> Tensor:
    """[B] parameters shaped [B, 1, 1, 1] to broadcast over a batch."""
    return values.view(-1, 1, 1, 1)


# --- colour-space helpers ---------------------------------------------------------------------------


def _hue_value_spread(rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hue (fraction of a turn), value (max channel) and spread (max - min) of [..., 3, H, W] RGB.

    Written for CPU speed, where plain arithmetic is many times faster than aminmax over the three
    channels or torch.where, and fresh large temporaries cost page faults: elementwise max/min, 0/1
    masks, and every intermediate written into one preallocated workspace.
    """
    r, g, b = rgb.unbind(dim=-3)
    work = torch.empty((6, *r.shape), dtype=rgb.dtype, device=rgb.device)
    value, spread, is_r, is_g, hue, scratch = work.unbind(0)
    torch.maximum(torch.maximum(r, g, out=value), b, out=value)
    torch.minimum(torch.minimum(r, g, out=spread), b, out=spread).neg_().add_(value)
    # Which channel is largest (ties go to r, then g: the hue formula agrees on ties anyway).
    torch.eq(value, r, out=is_r)
    torch.eq(value, g, out=is_g).addcmul_(is_g, is_r, value=-1)
    # In sixths of a turn: (g - b) / spread if r is largest, 2 + (b - r) / spread if g, 4 + (r - g) /
    # spread if b. Grey pixels have numerator 0, so dividing by a tiny number instead of their zero
    # spread gives hue 0, never NaN.
    torch.sub(g, b, out=hue).mul_(is_r).addcmul_(torch.sub(b, r, out=scratch), is_g)
    is_b = is_r.add_(is_g).neg_().add_(1)  # is_r is not needed any more
    hue.addcmul_(torch.sub(r, g, out=scratch), is_b)
    hue.div_(torch.clamp_min(spread, torch.finfo(rgb.dtype).tiny, out=scratch))
    hue.add_(is_g, alpha=2).add_(is_b, alpha=4)
    return hue.div_(6).add_(1).frac_(), value, spread


def _rgb_from(hue: Tensor, value: Tensor, spread: Tensor, out: Tensor) -> Tensor:
    """RGB [..., 3, H, W] from hue, value and spread [..., H, W], written into `out` (which must not
    overlap them). Branch-free: channel n is value - spread * clamp(min(k, 4 - k), 0, 1) with
    k = (n + 6 hue) mod 6, n = 5, 3, 1 for R, G, B; everything in place, since on a CPU a fresh
    large tensor costs more (page faults) than the arithmetic."""
    offsets = torch.tensor([5 / 6, 3 / 6, 1 / 6], device=hue.device, dtype=hue.dtype).view(3, 1, 1)
    k = torch.add(offsets, hue.unsqueeze(-3), out=out).frac_().mul_(6)  # hue in [0, 1): frac is the mod
    k.sub_(2).abs_().neg_().add_(2)  # min(k, 4 - k) = 2 - |k - 2|
    return k.clamp_(0, 1).mul_(spread.unsqueeze(-3)).neg_().add_(value.unsqueeze(-3))


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """[..., 3, H, W] RGB in [0, 1] to HSV, every component in [0, 1] (hue as a fraction of a turn)."""
    hue, value, spread = _hue_value_spread(rgb)
    saturation = spread.div_(value.clamp_min(torch.finfo(rgb.dtype).tiny))  # black: 0 / tiny = 0
    return torch.stack((hue, saturation, value), dim=-3)


def hsv_to_rgb(hsv: Tensor, out: Tensor | None = None) -> Tensor:
    """Inverse of `rgb_to_hsv`, into `out` when given (a tensor not overlapping `hsv`)."""
    hue, saturation, value = hsv.unbind(dim=-3)
    return _rgb_from(hue, value, value * saturation, torch.empty_like(hsv) if out is None else out)


def _shift_hue(rgb: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of each image by `shift` [B] (fractions of a turn) in place, keeping S and V."""
    hue, value, spread = _hue_value_spread(rgb)
    # |shift| <= 0.5, so adding 1 keeps the argument of frac positive: frac is then the mod 1.
    return _rgb_from(hue.add_(shift.view(-1, 1, 1)).add_(1).frac_(), value, spread, out=rgb)


def _as_float(images: Tensor) -> Tensor:
    """A float32 copy in [0, 1], which the option may then modify in place."""
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    return images.to(torch.float32, copy=True)


def _restore(images: Tensor, dtype: torch.dtype) -> Tensor:
    """Float [0, 1] images (a private copy, modified in place) back to `dtype`; uint8 is rounded."""
    if dtype == torch.uint8:
        return images.mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    return images.clamp_(0, 1).to(dtype)


# --- options --------------------------------------------------------------------------------------


class BatchAugment(nn.Module):
    """Base class: batch / single-image dispatch and the float round trip.

    Subclasses implement `_apply(images)` on a 4-D batch: float32 in [0, 1] when `needs_float`, else
    the input dtype. Options that need statistics of the training data also implement
    `fit(images_uint8)`, `stats() -> dict` and `load_stats(dict)` (see `FancyPCA`); `build_augment`
    fits them, caches the result per data set and writes it to the run directory.
    """

    needs_float = True
    # Crop-type options add extra crops of minority classes instead of transforming the batch.
    minority_only = False

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() == 3:
            return self.forward(images.unsqueeze(0)).squeeze(0)
        if images.dim() != 4:
            raise ValueError(f"{type(self).__name__} expects [B, C, H, W] or [C, H, W], got {list(images.shape)}")
        if not self.needs_float:
            return self._apply(images)
        return _restore(self._apply(_as_float(images)), images.dtype)

    def _apply(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def check_image_size(self, height: int, width: int) -> None:
        """ValueError if the option cannot work on height x width images (called by build_augment)."""


def _select(choose: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """`first` for the images where `choose` [B] is true, else `second`. Arithmetic (exact for 0/1
    weights) because torch.where is several times slower on a CPU."""
    weight = _per_image(choose).to(first.dtype)
    return first * weight + second * (1 - weight)


class Flip(BatchAugment):
    """`flip`: mirror left-right with probability p."""

    needs_float = False

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = check_range("p", p, 0.0, 1.0)

    def _apply(self, images: Tensor) -> Tensor:
        flip = torch.rand(len(images), device=images.device) < self.p
        return _select(flip, TF.horizontal_flip(images), images)


class _CropType(BatchAugment):
    """Options that can also serve as the text's minority-class crops (`minority_only`): `Augment`
    then appends extra crops of minority-class images and leaves the batch itself untouched."""

    def __init__(self, size: Optional[int], minority_only: bool) -> None:
        super().__init__()
        if size is not None:
            check_range("size", size, 1)
        self.size = size
        self.minority_only = minority_only

    def _output_size(self, height: int, width: int) -> tuple[int, int]:
        self.check_image_size(height, width)
        return (height, width) if self.size is None else (self.size, self.size)

    def check_image_size(self, height: int, width: int) -> None:
        if self.size is not None and self.size > min(height, width):
            raise ValueError(f"size={self.size}: larger than the {height}x{width} image")


def _source_index(position: Tensor, size: int, mode: str) -> tuple[Tensor, Tensor | None]:
    """Where a coordinate of the padded image (-padding <= position < size + padding) reads from in
    the unpadded one, and for `constant` which positions are inside it (the others are zero)."""
    last = size - 1
    if mode == "reflect":  # mirror about the first and last pixel: -1 -> 1, size -> size - 2
        return last - (last - position.abs()).abs(), None
    if mode == "symmetric":  # mirror about the outer edges: -1 -> 0, size -> size - 1 (doubled coordinates)
        return (2 * size - (2 * size - (2 * position + 1).abs()).abs() - 1) // 2, None
    inside = (position >= 0) & (position <= last) if mode == "constant" else None
    return position.clamp(0, last), inside


class Crop(_CropType):
    """`crop`: pad every side by `padding`, then cut a random `size` x `size` window (the image size
    when `size` is null, i.e. a random translation by up to `padding` pixels)."""

    needs_float = False

    def __init__(
        self, padding: int = 4, padding_mode: str = "reflect", size: Optional[int] = None, minority_only: bool = False
    ) -> None:
        super().__init__(size, minority_only)
        self.padding = int(check_range("padding", padding, 0))
        self.padding_mode = check_choice("padding_mode", padding_mode, CROP_PADDING)

    def check_image_size(self, height: int, width: int) -> None:
        super().check_image_size(height, width)
        if self.padding_mode in ("reflect", "symmetric") and self.padding >= min(height, width):
            raise ValueError(
                f"padding={self.padding}: must be smaller than the {height}x{width} image "
                f"with padding_mode={self.padding_mode}"
            )

    def _apply(self, images: Tensor) -> Tensor:
        batch, _, height, width = images.shape
        out_h, out_w = self._output_size(height, width)
        spare_h, spare_w = height + 2 * self.padding - out_h, width + 2 * self.padding - out_w
        top = (torch.rand(batch, device=images.device) * (spare_h + 1)).long()
        left = (torch.rand(batch, device=images.device) * (spare_w + 1)).long()
        return self.crop(images, top, left, (out_h, out_w))

    def crop(self, images: Tensor, top: Tensor, left: Tensor, size: tuple[int, int]) -> Tensor:
        """The window of `size` at (top, left) [B] of every padded image, as one gather from the
        unpadded batch: the padding is index arithmetic, never materialised (padding a uint8 batch
        by reflection costs more than the whole crop)."""
        batch, channels, height, width = images.shape
        device = images.device
        offsets = [torch.arange(n, device=device) - self.padding for n in size]
        rows, rows_in = _source_index(top[:, None] + offsets[0], height, self.padding_mode)
        cols, cols_in = _source_index(left[:, None] + offsets[1], width, self.padding_mode)
        index = (rows[:, :, None] * width + cols[:, None, :]).view(batch, 1, -1).expand(-1, channels, -1)
        windows = images.flatten(2).gather(2, index).view(batch, channels, *size)
        if self.padding_mode == "constant":
            windows = windows * (rows_in[:, :, None] & cols_in[:, None, :]).unsqueeze(1).to(images.dtype)
        return windows


def _warp(images: Tensor, theta: Tensor, size: tuple[int, int], padding_mode: str) -> Tensor:
    """One affine warp per image (theta [B, 2, 3] maps output to input in normalised coordinates),
    bilinear, in a single grid_sample call."""
    grid = F.affine_grid(theta, [len(images), images.shape[1], *size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


class ResizedCrop(_CropType):
    """`resized_crop`: a random box covering a fraction `scale` of the image area with aspect ratio
    in `ratio` (log-uniform), resized to `size` x `size` (the image size when null)."""

    def __init__(
        self,
        scale: tuple[float, float] = (0.25, 1.0),
        ratio: tuple[float, float] = (0.75, 1.3333333333333333),
        size: Optional[int] = None,
        minority_only: bool = False,
    ) -> None:
        super().__init__(size, minority_only)
        self.scale = check_interval("scale", scale, 0.0, 1.0, positive=True)
        self.ratio = check_interval("ratio", ratio, positive=True)

    def _apply(self, images: Tensor) -> Tensor:
        batch, _, height, width = images.shape
        out_size = self._output_size(height, width)
        device = images.device
        area = _uniform(self.scale, batch, device)
        aspect = _log_uniform(self.ratio, batch, device)
        # Box sides as fractions of the image sides; an extreme aspect is clipped to the image instead
        # of redrawn as torchvision does, which keeps the draw a single vectorised step.
        box_w = (area * aspect * height / width).sqrt().clamp(max=1.0)
        box_h = (area / aspect * width / height).sqrt().clamp(max=1.0)
        centre_x = (1 - box_w) * (2 * torch.rand(batch, device=device) - 1)
        centre_y = (1 - box_h) * (2 * torch.rand(batch, device=device) - 1)
        theta = torch.zeros(batch, 2, 3, device=device)
        theta[:, 0, 0], theta[:, 0, 2] = box_w, centre_x
        theta[:, 1, 1], theta[:, 1, 2] = box_h, centre_y
        return _warp(images, theta, out_size, "border")


class RotateScale(BatchAugment):
    """`rotate_scale`: rotation by an angle from `degrees` (counter-clockwise positive) and scaling by
    a factor from `scale` about the centre, in one affine warp per image."""

    def __init__(
        self,
        degrees: tuple[float, float] = (-15.0, 15.0),
        scale: tuple[float, float] = (0.9, 1.1),
        padding_mode: str = "symmetric",
    ) -> None:
        super().__init__()
        self.degrees = check_interval("degrees", degrees, -180.0, 180.0)
        self.scale = check_interval("scale", scale, positive=True)
        self.padding_mode = check_choice("padding_mode", padding_mode, WARP_PADDING)

    def _apply(self, images: Tensor) -> Tensor:
        batch, _, height, width = images.shape
        device = images.device
        angle = torch.deg2rad(_uniform(self.degrees, batch, device))
        zoom = _uniform(self.scale, batch, device)
        cos, sin = angle.cos() / zoom, angle.sin() / zoom
        # Output pixel p samples the input at R(-angle) p / zoom, in pixel units about the centre;
        # the height/width factors convert to grid_sample's per-axis normalised coordinates.
        theta = torch.zeros(batch, 2, 3, device=device)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * height / width
        theta[:, 1, 0], theta[:, 1, 1] = sin * width / height, cos
        return _warp(images, theta, (height, width), WARP_PADDING[self.padding_mode])


def _require_rgb(images: Tensor, option: str) -> None:
    if images.shape[1] != 3:
        raise ValueError(f"{option} needs RGB images, got {images.shape[1]} channels")


def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """factor * images + (1 - factor) * other per image, clamped (torchvision's blend), in place.
    (mul_ and add_ rather than lerp_, which is several times slower with broadcast operands.)"""
    factor = _per_image(factor)
    return images.mul_(factor).add_(other * (1 - factor)).clamp_(0, 1)


class ColorJitter(BatchAugment):
    """`color_jitter`: brightness, contrast and saturation factors from [1 - x, 1 + x] and a hue
    shift from [-hue, hue] (torchvision's ColorJitter), in that fixed order."""

    def __init__(
        self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1
    ) -> None:
        super().__init__()
        amounts = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
        for name, amount in amounts.items():
            check_range(name, amount, 0.0)
        # Factor ranges as torchvision draws them; a zero amount switches that adjustment off.
        self.factors = {name: (max(0.0, 1 - amount), 1 + amount) for name, amount in amounts.items() if amount > 0}
        self.hue = check_range("hue", hue, 0.0, 0.5)

    def _apply(self, images: Tensor) -> Tensor:
        batch, device = len(images), images.device
        factors = {name: _uniform(interval, batch, device) for name, interval in self.factors.items()}
        shift = _uniform((-self.hue, self.hue), batch, device) if self.hue > 0 else None
        return self.adjust(images, shift=shift, **factors)

    @staticmethod
    def adjust(
        images: Tensor,
        brightness: Tensor | None = None,
        contrast: Tensor | None = None,
        saturation: Tensor | None = None,
        shift: Tensor | None = None,
    ) -> Tensor:
        """Float [B, 3, H, W] images adjusted in place by per-image factors [B] (None: skipped), in
        torchvision's formulas: blend with black, with the mean grey level, with the grey image;
        then the hue rotated by `shift` turns."""
        _require_rgb(images, "color_jitter")
        if brightness is not None:
            images.mul_(_per_image(brightness)).clamp_(0, 1)
        if contrast is not None:
            images = _blend(images, TF.rgb_to_grayscale(images).mean(dim=(-3, -2, -1), keepdim=True), contrast)
        if saturation is not None:
            images = _blend(images, TF.rgb_to_grayscale(images), saturation)
        if shift is not None:
            images = _shift_hue(images, shift)
        return images


class HSV(BatchAugment):
    """`hsv`: the text's colour recipe. Per image, S and V are each raised to a power from `power`
    (log-uniform, so 1/4 and 4 are equally likely), multiplied by a factor from `scale` and shifted by
    a value from `offset` (separate draws for S and V), then clamped to [0, 1]; H is shifted by a value
    from `hue` and wrapped (hue is an angle)."""

    def __init__(
        self,
        power: tuple[float, float] = (0.25, 4.0),
        scale: tuple[float, float] = (0.7, 1.4),
        offset: tuple[float, float] = (-0.1, 0.1),
        hue: tuple[float, float] = (-0.1, 0.1),
    ) -> None:
        super().__init__()
        self.power = check_interval("power", power, positive=True)
        self.scale = check_interval("scale", scale, 0.0)
        self.offset = check_interval("offset", offset, -1.0, 1.0)
        self.hue = check_interval("hue", hue, -0.5, 0.5)

    def sample(self, batch: int, device: torch.device) -> dict[str, Tensor]:
        """One image's parameters per row: power, scale and offset [B, 2] (S, V), hue [B]."""
        return {
            "power": _log_uniform(self.power, 2 * batch, device).view(batch, 2),
            "scale": _uniform(self.scale, 2 * batch, device).view(batch, 2),
            "offset": _uniform(self.offset, 2 * batch, device).view(batch, 2),
            "hue": _uniform(self.hue, batch, device),
        }

    def _apply(self, images: Tensor) -> Tensor:
        _require_rgb(images, "hsv")
        params = {name: value[..., None, None] for name, value in self.sample(len(images), images.device).items()}
        hsv = rgb_to_hsv(images)
        hsv[:, :1].add_(params["hue"][:, None]).add_(1).frac_()  # |shift| <= 0.5: frac is the mod 1
        hsv[:, 1:].pow_(params["power"]).mul_(params["scale"]).add_(params["offset"]).clamp_(0, 1)
        return hsv_to_rgb(hsv, out=images)


class FancyPCA(BatchAugment):
    """`fancy_pca` (AlexNet's colour augmentation): with P and λ the eigenvectors and eigenvalues of
    the 3x3 covariance of the training pixels' RGB values (in [0, 1]), every image gets
    P (α ∘ λ), α ~ N(0, std²) drawn afresh per image and per use, added to each of its pixels."""

    def __init__(self, std: float = 0.1) -> None:
        super().__init__()
        self.std = check_range("std", std, 0.0)
        # Neutral until fitted: zero eigenvalues add nothing.
        self.register_buffer("eigenvalues", torch.zeros(3))
        self.register_buffer("eigenvectors", torch.eye(3))

    def fit(self, images: Tensor) -> FancyPCA:
        """Eigen-decompose the RGB covariance over all pixels of uint8 images [N, 3, H, W]."""
        _require_rgb(images, "fancy_pca")

        def pixels() -> Iterator[Tensor]:  # [3, n] float64 chunks, so no full float copy is made
            for chunk in images.split(1024):
                yield chunk.cpu().to(torch.float64).div_(255).transpose(0, 1).reshape(3, -1)

        count = images.numel() // 3
        # Two passes (mean, then centred products): no cancellation between E[xxᵀ] and mean², so
        # nearly constant colours keep an accurate (tiny) variance.
        mean = sum(chunk.sum(dim=1) for chunk in pixels()) / count
        covariance = sum((chunk - mean[:, None]) @ (chunk - mean[:, None]).T for chunk in pixels()) / count
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        # Largest component first, as usually reported; flat data gives zeros, not tiny negatives.
        self.eigenvalues.copy_(eigenvalues.flip(0).clamp_min(0))
        self.eigenvectors.copy_(eigenvectors.flip(1))
        return self

    def stats(self) -> dict[str, list]:
        return {"eigenvalues": self.eigenvalues.tolist(), "eigenvectors": self.eigenvectors.tolist()}

    def load_stats(self, stats: dict[str, list]) -> None:
        self.eigenvalues.copy_(torch.tensor(stats["eigenvalues"]))
        self.eigenvectors.copy_(torch.tensor(stats["eigenvectors"]))

    def shifts(self, batch: int, device: torch.device) -> Tensor:
        """The RGB offsets [B, 3] for `batch` images: P (α ∘ λ) with α ~ N(0, std²) per image."""
        alpha = torch.randn(batch, 3, device=device) * self.std
        return (alpha * self.eigenvalues.to(device)) @ self.eigenvectors.to(device).T

    def _apply(self, images: Tensor) -> Tensor:
        _require_rgb(images, "fancy_pca")
        return images.add_(self.shifts(len(images), images.device)[:, :, None, None])


# --- the pipeline ---------------------------------------------------------------------------------


class Augment(nn.Module):
    """The chosen options in order. `forward(images, labels) -> (images, labels)`: an option with
    `minority_only` appends its crops of minority-class images (and their labels) to the batch.

    Image i of class c gets on average n_max / n_c - 1 extra crops (whole part always, fractional
    part by a coin flip), so the expected class counts of a batch become balanced.
    """

    def __init__(self, options: dict[str, BatchAugment], class_counts: Tensor) -> None:
        super().__init__()
        self.options = nn.ModuleDict(options)
        counts = class_counts.double()
        rate = torch.where(counts > 0, counts.max() / counts.clamp_min(1) - 1, torch.zeros_like(counts))
        self.register_buffer("extra_rate", rate.float())

    def _minority_picks(self, labels: Tensor) -> Tensor:
        rate = self.extra_rate.to(labels.device)[labels]
        count = rate.floor() + (torch.rand_like(rate) < rate.frac()).float()
        return torch.repeat_interleave(torch.arange(len(labels), device=labels.device), count.long())

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        for option in self.options.values():
            if option.minority_only:
                picks = self._minority_picks(labels)
                if len(picks) == 0:
                    continue
                images = torch.cat([images, option(images[picks])])
                labels = torch.cat([labels, labels[picks]])
            else:
                images = option(images)
        return images, labels


def augment_grid(augment: Augment, images: Tensor, labels: Tensor, n_rows: int) -> Tensor:
    """A [3, H', W'] float image in [0, 1] on the CPU: `images` in the first row, then `n_rows` rows
    of independently augmented versions of them. Samples that minority-only options append are not
    shown (those options leave the images themselves unchanged)."""
    rows = [images]
    with torch.no_grad():
        for _ in range(n_rows):
            augmented, _ = augment(images, labels)
            rows.append(augmented[: len(images)])
    return make_grid(_as_float(torch.cat(rows)).cpu(), nrow=len(images), padding=2, pad_value=1.0)


def split_aug_config(aug_cfg: DictConfig | dict) -> tuple[dict[str, Any], bool]:
    """The option nodes of `cfg.aug` and the group-wide `minority_only` flag (default false)."""
    from cnntricks.config import check_switches, group_options

    if not isinstance(aug_cfg, DictConfig):
        aug_cfg = OmegaConf.create(aug_cfg)
    check_switches("aug", aug_cfg)
    return group_options(aug_cfg), aug_cfg.get(GROUP_FLAG, False)


def _images_digest(images: Tensor) -> str:
    digest = hashlib.sha256(str(tuple(images.shape)).encode())
    digest.update(images.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def _fit_statistics(option: Any, name: str, images: Tensor, run_dir: Path | None, cache_dir: Path | None) -> None:
    """Fit a data-dependent option once per data set: reuse the cache entry keyed by a hash of the
    training images when there is one; write the statistics to the run directory and the log."""
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{type(option).__name__.lower()}-{_images_digest(images)}.json"
    if cache is not None and cache.is_file():
        option.load_stats(json.loads(cache.read_text()))
        source = f"cache {cache}"
    else:
        option.fit(images)
        source = f"{len(images)} training images"
        if cache is not None:  # atomically: parallel sweep jobs never read half a file
            atomic_write_json(cache, option.stats())
    stats = option.stats()
    if run_dir is not None:
        (Path(run_dir) / f"{name}.json").write_text(json.dumps(stats, indent=2))
    log.info("aug.%s statistics (from %s): %s", name, source, json.dumps(stats))


def build_augment(
    aug_cfg: DictConfig | dict, train_split: Any, run_dir: Path | None = None, cache_dir: Path | None = None
) -> Augment | None:
    """The `aug` pipeline for `train_split` (.images uint8 [N, 3, H, W], .labels), None when empty.

    Checks each option against the image size, fits data-dependent options on the training split,
    and applies `aug.minority_only=true` to every crop-type option.
    """
    from cnntricks.config import ConfigError, build

    try:
        nodes, minority_only = split_aug_config(aug_cfg)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if not nodes:
        if minority_only:
            raise ConfigError("aug.minority_only=true: no aug option chosen; add a crop, e.g. '+aug=[crop]'")
        return None
    height, width = train_split.images.shape[-2:]
    options: dict[str, BatchAugment] = {}
    for name, node in nodes.items():
        option = build(node, f"aug.{name}")
        try:
            option.check_image_size(height, width)
        except ValueError as error:
            raise ConfigError(f"aug.{name}: {error}") from None
        if minority_only and isinstance(option, _CropType):
            option.minority_only = True
        if hasattr(option, "fit"):
            _fit_statistics(option, name, train_split.images, run_dir, cache_dir)
        options[name] = option
    if minority_only and not any(isinstance(option, _CropType) for option in options.values()):
        raise ConfigError(
            f"aug.minority_only=true: needs a crop-type option (crop or resized_crop) in aug, got {', '.join(options)}"
        )
    labels = train_split.labels.cpu()
    return Augment(options, torch.bincount(labels, minlength=int(labels.max()) + 1))
