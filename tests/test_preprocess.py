"""Preprocessing options: statistics from the training split, the whitening math, checkpoints, errors."""

from __future__ import annotations

import time

import pytest
import torch

from cnntricks.config import ConfigError
from cnntricks.preprocess import MinMax, NoPreprocess, PCAWhiten, Standardize, ZCAWhiten, ZeroCenter, build_preprocess

SHAPE = (3, 4, 4)  # 48 dimensions: small enough that many samples pin the covariance down
ALL = [NoPreprocess, ZeroCenter, Standardize, MinMax, PCAWhiten, ZCAWhiten]


def _correlated_images(n: int = 6000, shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> torch.Tensor:
    """uint8 images whose pixels are strongly correlated (a random linear mix) and not all equal in scale."""
    generator = torch.Generator().manual_seed(seed)
    dims = shape[0] * shape[1] * shape[2]
    mixing = torch.randn(dims, dims, generator=generator) / dims**0.5 + torch.eye(dims)
    values = 0.5 + 0.08 * torch.randn(n, dims, generator=generator) @ mixing.T
    return (values.clamp(0, 1) * 255).round().to(torch.uint8).view(n, *shape)


def _covariance(x: torch.Tensor) -> torch.Tensor:
    return torch.cov(x.flatten(1).double().T)


def test_standardize_gives_zero_mean_unit_std_per_channel():
    images = _correlated_images(2000)
    out = Standardize(SHAPE).fit(images)(images.float() / 255)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    centred = ZeroCenter(SHAPE).fit(images)(images.float() / 255)
    assert torch.allclose(centred.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)


def test_minmax_maps_every_dimension_to_minus_one_one():
    images = _correlated_images(500)
    out = MinMax(SHAPE).fit(images)(images.float() / 255)
    assert torch.allclose(out.amin(dim=0), -torch.ones(SHAPE), atol=1e-5)
    assert torch.allclose(out.amax(dim=0), torch.ones(SHAPE), atol=1e-5)


def test_zca_whitened_training_data_has_identity_covariance():
    images = _correlated_images()
    zca = ZCAWhiten(SHAPE, eps=1e-9).fit(images)
    covariance = _covariance(zca(images.float() / 255))
    assert torch.allclose(covariance, torch.eye(48, dtype=torch.float64), atol=0.01)
    # ZCA is the symmetric whitening matrix: it stays in pixel space.
    assert torch.allclose(zca.transform, zca.transform.T, atol=1e-3 * zca.transform.abs().max().item())


def test_pca_whitening_decorrelates_and_scales_by_sqrt_eigenvalue_plus_eps():
    images = _correlated_images()
    x = images.float() / 255
    eigenvalues = torch.linalg.eigvalsh(_covariance(x)).flip(0)  # PCA output: largest component first
    for eps in (1e-9, 1e-3):
        covariance = _covariance(PCAWhiten(SHAPE, eps=eps).fit(images)(x))
        off_diagonal = covariance - torch.diag(covariance.diag())
        assert off_diagonal.abs().max() < 0.01
        assert torch.allclose(covariance.diag(), eigenvalues / (eigenvalues + eps), atol=0.01)


def test_statistics_travel_in_the_state_dict():
    images = _correlated_images(500)
    x = images.float() / 255
    for option in ALL:
        fitted = option(SHAPE).fit(images)
        restored = option(SHAPE)
        restored.load_state_dict(fitted.state_dict())
        assert torch.equal(restored(x), fitted(x)), option.__name__


@pytest.mark.parametrize("option", ALL)
def test_constant_images_give_no_nan(option):
    for value in (0, 128, 255):
        images = torch.full((20, *SHAPE), value, dtype=torch.uint8)
        out = option(SHAPE).fit(images)(images.float() / 255)
        assert not out.isnan().any() and not out.isinf().any()
        if option is not NoPreprocess:
            assert out.abs().max() < 1e-3  # the training mean maps to zero


def test_bad_eps_and_oversized_whitening_are_rejected():
    with pytest.raises(ValueError, match=r"eps=0.0: must be > 0"):
        ZCAWhiten(SHAPE, eps=0.0)
    with pytest.raises(ValueError, match=r"whitening needs a 150528x150528 covariance"):
        PCAWhiten((3, 224, 224))
    with pytest.raises(ValueError, match=r"fit expects uint8 images of shape \[N, 3, 4, 4\]"):
        Standardize(SHAPE).fit(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


@pytest.mark.parametrize("option", ["none", "zero_center", "standardize", "minmax", "pca_whiten", "zca_whiten"])
def test_every_config_option_builds(make_cfg, option):
    module = build_preprocess(make_cfg(f"preprocess={option}").preprocess, SHAPE)
    assert module.image_shape == SHAPE


def test_config_eps_error_names_the_option(make_cfg):
    with pytest.raises(ConfigError, match=r"^preprocess: eps=-1.0: must be > 0$"):
        build_preprocess(make_cfg("preprocess=zca_whiten", "preprocess.eps=-1.0").preprocess, SHAPE)


@pytest.mark.slow
def test_whitening_cifar_sized_images_takes_seconds():
    images = torch.randint(0, 256, (4000, 3, 32, 32), dtype=torch.uint8)
    start = time.perf_counter()
    ZCAWhiten((3, 32, 32)).fit(images)
    assert time.perf_counter() - start < 60  # a few seconds on an idle 2-core machine
