"""Input preprocessing, Sec. 2 of the text: the `preprocess` config group.

Every option is an `nn.Module` that sits in front of the network (inside the trained and
checkpointed `Classifier`), so the statistics it learns travel with the model. The statistics are
registered buffers sized from the image shape given at construction, which lets a checkpoint's
`state_dict` restore them without refitting. `fit(train_images_uint8)` computes them from the
training split only; `forward(x)` takes float images in [0, 1], shape [B, C, H, W].

An unfitted module holds neutral statistics (mean 0, scale 1, identity transform), so it passes
images through unchanged rather than producing garbage.
"""

from __future__ import annotations

from typing import Iterator

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

__all__ = [
    "Preprocess",
    "NoPreprocess",
    "ZeroCenter",
    "Standardize",
    "MinMax",
    "PCAWhiten",
    "ZCAWhiten",
    "build_preprocess",
]

# Images per chunk when accumulating statistics: bounds the float64 copy to a few tens of MB.
_CHUNK = 1024
# Whitening keeps a D x D matrix: 3x64x64 is 12288 dims (600 MB in float32); beyond that neither
# the matrix nor its eigendecomposition is practical, so refuse early with a clear message.
MAX_WHITEN_DIMS = 3 * 64 * 64


def _float_chunks(images: Tensor) -> Iterator[Tensor]:
    """The uint8 images as float64 in [0, 1], flattened to [n, D], a chunk at a time."""
    for start in range(0, len(images), _CHUNK):
        yield images[start : start + _CHUNK].flatten(1).to(torch.float64) / 255.0


def _safe_scale(scale: Tensor) -> Tensor:
    """A divisor with zeros replaced by 1: a constant input dimension maps to 0, never NaN."""
    return torch.where(scale > 0, scale, torch.ones_like(scale))


class Preprocess(nn.Module):
    """Base class: remembers the image shape and checks what `fit` receives."""

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape={list(image_shape)}: expected positive (channels, height, width)")
        self.image_shape = tuple(int(s) for s in image_shape)

    @property
    def dims(self) -> int:
        channels, height, width = self.image_shape
        return channels * height * width

    def fit(self, images: Tensor) -> Preprocess:
        """Compute the statistics from the training images (uint8 [N, C, H, W])."""
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != self.image_shape or len(images) == 0:
            raise ValueError(
                f"fit expects uint8 images of shape [N, {', '.join(map(str, self.image_shape))}] with N >= 1, "
                f"got {images.dtype} {list(images.shape)}"
            )
        with torch.no_grad():
            self._fit(images.cpu())
        return self

    def _fit(self, images: Tensor) -> None:
        """Subclasses set their buffers here from uint8 images on the CPU."""

    def extra_repr(self) -> str:
        return f"image_shape={list(self.image_shape)}"


class NoPreprocess(Preprocess):
    """`none`: the network sees the raw [0, 1] pixels."""

    def forward(self, x: Tensor) -> Tensor:
        return x


def _channel_moments(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over all pixels of uint8 images, in float64."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for chunk in _float_chunks(images):
        per_channel = chunk.view(len(chunk), channels, -1)
        total += per_channel.sum(dim=(0, 2))
        squares += per_channel.square().sum(dim=(0, 2))
    count = images.numel() // channels
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return mean, std


class ZeroCenter(Preprocess):
    """`zero_center`: subtract the per-channel mean of the training pixels."""

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__(image_shape)
        self.register_buffer("mean", torch.zeros(1, self.image_shape[0], 1, 1))

    def _fit(self, images: Tensor) -> None:
        mean, _ = _channel_moments(images)
        self.mean.copy_(mean.view_as(self.mean))

    def forward(self, x: Tensor) -> Tensor:
        return x - self.mean


class Standardize(ZeroCenter):
    """`standardize` (default): zero-centre, then divide by the per-channel standard deviation."""

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__(image_shape)
        self.register_buffer("std", torch.ones_like(self.mean))

    def _fit(self, images: Tensor) -> None:
        mean, std = _channel_moments(images)
        self.mean.copy_(mean.view_as(self.mean))
        self.std.copy_(_safe_scale(std).view_as(self.std))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class MinMax(Preprocess):
    """`minmax`: every input dimension (channel and pixel) mapped linearly so that the training
    minimum goes to -1 and the maximum to +1."""

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__(image_shape)
        self.register_buffer("center", torch.zeros(1, *self.image_shape))
        self.register_buffer("half_range", torch.ones(1, *self.image_shape))

    def _fit(self, images: Tensor) -> None:
        # uint8 min/max are exact, so no float accumulation is needed.
        low = images.amin(dim=0, keepdim=True).to(torch.float64) / 255.0
        high = images.amax(dim=0, keepdim=True).to(torch.float64) / 255.0
        self.center.copy_((high + low) / 2)
        self.half_range.copy_(_safe_scale((high - low) / 2))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.center) / self.half_range


class _Whiten(Preprocess):
    """Shared part of PCA and ZCA whitening: the covariance of the flattened training images, its
    eigendecomposition, and a D x D linear map applied to the centred input.

    The map is computed in float64 (the eigendecomposition of a 3072 x 3072 covariance takes a few
    seconds on a CPU) and stored in float32 as a buffer.
    """

    def __init__(self, image_shape: tuple[int, int, int], eps: float = 1e-5) -> None:
        super().__init__(image_shape)
        if not eps > 0:
            raise ValueError(f"eps={eps}: must be > 0")
        if self.dims > MAX_WHITEN_DIMS:
            raise ValueError(
                f"image_shape={list(self.image_shape)}: whitening needs a {self.dims}x{self.dims} covariance; "
                f"at most {MAX_WHITEN_DIMS} dims are supported (e.g. data.image_size <= 64)"
            )
        self.eps = eps
        self.register_buffer("mean", torch.zeros(self.dims))
        self.register_buffer("transform", torch.eye(self.dims))

    def _fit(self, images: Tensor) -> None:
        mean = sum(chunk.sum(dim=0) for chunk in _float_chunks(images)) / len(images)
        covariance = torch.zeros(self.dims, self.dims, dtype=torch.float64)
        for chunk in _float_chunks(images):
            centred = chunk - mean
            covariance.addmm_(centred.T, centred)
        covariance /= len(images)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        # Rounding can leave tiny negative eigenvalues for flat directions; eps alone must not cancel.
        scale = (eigenvalues.clamp_min(0) + self.eps).rsqrt()
        self.mean.copy_(mean)
        self.transform.copy_(self._map(eigenvectors, scale))

    def _map(self, eigenvectors: Tensor, scale: Tensor) -> Tensor:
        """The D x D matrix W such that whitened = centred @ W."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return ((x.flatten(1) - self.mean) @ self.transform).view(x.shape)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps}"


class PCAWhiten(_Whiten):
    """`pca_whiten`: project the centred image onto the eigenbasis of the training covariance and
    divide each coordinate by sqrt(eigenvalue + eps). The output is reshaped to the image shape but
    its "pixels" are principal components (largest variance first), not spatial positions."""

    def _map(self, eigenvectors: Tensor, scale: Tensor) -> Tensor:
        # eigh sorts ascending; put the leading components first.
        return (eigenvectors * scale).flip(1)


class ZCAWhiten(_Whiten):
    """`zca_whiten`: PCA whitening rotated back to pixel space (W = U diag(s) Uᵀ), so the output
    is still an image, with decorrelated unit-variance pixels (edges emphasised)."""

    def _map(self, eigenvectors: Tensor, scale: Tensor) -> Tensor:
        return (eigenvectors * scale) @ eigenvectors.T


def build_preprocess(preprocess_cfg: DictConfig, image_shape: tuple[int, int, int]) -> nn.Module:
    """The `preprocess` option for images of `image_shape` (C, H, W), not yet fitted."""
    from cnntricks.config import build

    return build(preprocess_cfg, "preprocess", image_shape=tuple(image_shape))
