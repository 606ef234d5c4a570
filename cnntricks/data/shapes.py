"""`data=shapes`: the embedded default data set, procedural RGB shapes in 10 classes.

Every image shows one main shape, at least as large as any clutter; its kind is the class.
Everything else is a nuisance the network has to learn to ignore: position, scale, rotation,
foreground and background colours, a background grating, an illumination gradient, pixel noise,
and clutter (thin lines and small shapes of any kind, some drawn over the main shape). All ten shapes are mirror-symmetric, so a horizontal flip
(an augmentation) turns an image into another image of the same class.

Generation is vectorised over the whole batch: one coordinate grid, inverse-transformed per image
by its position, scale and rotation, then a signed distance function per class gives anti-aliased
coverage, and the layers are composited. Images are made in chunks of `CHUNK` with a seed per
(data seed, split, chunk): the splits never share a seed, and the first m images of a split of
size n > m are the split of size m (learning curves over `data.n_train` nest).

Splits are cached under `<root>/shapes/` in a file keyed by a hash of every parameter, including
the generator's style constants, so tuning the generator never reuses a stale cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from cnntricks.data.base import Split, Splits, cache_key, check_counts, load_cache, save_cache

log = logging.getLogger(__name__)

CLASSES = ["circle", "square", "triangle", "hexagon", "plus", "ring", "star", "ellipse", "crescent", "heart"]
DEFAULT_SIZES = {"train": 5000, "val": 1000, "test": 1000}
CHUNK = 1000
GENERATOR_VERSION = 1  # bump when a change to the drawing code alters the images


@dataclass(frozen=True)
class Style:
    """The difficulty knobs. Lengths are in half-image units (the image spans [-1, 1]).

    Calibrated so that the default VGG, trained 15 epochs on 5000 images without augmentation,
    overfits visibly (train - val accuracy about 5-8 points) while flip + crop narrow the gap. The
    strongest knob is the lower end of `scale`: small shapes are memorised but generalise poorly.
    """

    scale: tuple[float, float] = (0.3, 0.9)  # radius of the class shape
    shift: float = 1.0  # fraction of the room left by its radius that the class shape moves around
    rotation: float = 180.0  # largest rotation of the class shape either way, in degrees
    clutter_slots: int = 4  # distractors drawn per image, each present with `clutter_p`
    clutter_p: float = 0.4
    clutter_scale: tuple[float, float] = (0.1, 0.3)
    clutter_front_p: float = 0.5  # chance a distractor is drawn over the class shape
    line_p: float = 0.4  # chance a distractor is a line rather than a small shape
    contrast: tuple[float, float] = (0.25, 0.7)  # foreground - background, per channel, same sign
    grating: tuple[float, float] = (0.0, 0.2)  # background grating amplitude
    gain: tuple[float, float] = (0.6, 1.2)  # global illumination
    slope: float = 0.3  # largest illumination gradient across half the image
    noise: tuple[float, float] = (0.02, 0.06)  # Gaussian pixel noise std, per image


STYLE = Style()


# --- signed distance functions in the shape's own frame (radius about 1; negative inside) ----------

def _star(x: Tensor, y: Tensor, r: float, n: int, m: float) -> Tensor:
    """Inigo Quilez's exact star SDF: n points of radius r; m=2 gives the regular n-gon."""
    an, en = math.pi / n, math.pi / m
    acx, acy, ecx, ecy = math.cos(an), math.sin(an), math.cos(en), math.sin(en)
    bn = torch.remainder(torch.atan2(x, y), 2 * an) - an
    length = torch.hypot(x, y)
    px = length * torch.cos(bn) - r * acx
    py = length * torch.sin(bn).abs() - r * acy
    t = (-(px * ecx + py * ecy)).clamp(0.0, r * acy / ecy)
    px, py = px + ecx * t, py + ecy * t
    return torch.hypot(px, py) * torch.sign(px)


def _box(x: Tensor, y: Tensor, bx: float, by: float) -> Tensor:
    qx, qy = x.abs() - bx, y.abs() - by
    return torch.hypot(qx.clamp(min=0), qy.clamp(min=0)) + torch.maximum(qx, qy).clamp(max=0)


def _ellipse(x: Tensor, y: Tensor, a: float, b: float) -> Tensor:
    # Not exact, but exact enough near the boundary, which is all anti-aliasing needs.
    return (torch.hypot(x / a, y / b) - 1) * min(a, b)


def _heart(x: Tensor, y: Tensor) -> Tensor:
    """Quilez's heart (x in [-0.6, 0.6], y in [0, 1.1]), centred and scaled to radius about 1."""
    k = 0.6
    qx, qy = (x * k).abs(), y * k + 0.5
    upper = torch.hypot(qx - 0.25, qy - 0.75) - math.sqrt(2) / 4
    h = 0.5 * (qx + qy).clamp(min=0)
    lower = torch.sqrt(torch.minimum(qx**2 + (qy - 1) ** 2, (qx - h) ** 2 + (qy - h) ** 2)) * torch.sign(qx - qy)
    return torch.where(qx + qy > 1, upper, lower) / k


SDF: list[Callable[[Tensor, Tensor], Tensor]] = [
    lambda x, y: torch.hypot(x, y) - 0.85,  # circle
    lambda x, y: _star(x, y, 0.95, 4, 2),  # square
    lambda x, y: _star(x, y, 1.0, 3, 2),  # triangle
    lambda x, y: _star(x, y, 0.95, 6, 2),  # hexagon
    lambda x, y: torch.minimum(_box(x, y, 0.9, 0.28), _box(x, y, 0.28, 0.9)),  # plus
    lambda x, y: (torch.hypot(x, y) - 0.7).abs() - 0.2,  # ring
    lambda x, y: _star(x, y, 1.0, 5, 3),  # star
    lambda x, y: _ellipse(x, y, 1.0, 0.5),  # ellipse
    lambda x, y: torch.maximum(torch.hypot(x, y) - 0.9, 0.75 - torch.hypot(x - 0.45, y)),  # crescent
    _heart,
    lambda x, y: torch.hypot(x - x.clamp(-1, 1), y) - 0.1,  # line (clutter only)
]
LINE = len(CLASSES)
assert len(SDF) == LINE + 1


# --- drawing -------------------------------------------------------------------------------------

def _grid(size: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates in [-1, 1], shaped to broadcast over [N, H, W]."""
    g = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    return g.view(1, 1, size), g.view(1, size, 1)


def _coverage(kind: Tensor, cx: Tensor, cy: Tensor, scale: Tensor, theta: Tensor, size: int) -> Tensor:
    """Anti-aliased coverage [N, H, W] in [0, 1] of shape `kind[i]` placed per image."""
    gx, gy = _grid(size)
    dx, dy = gx - cx.view(-1, 1, 1), gy - cy.view(-1, 1, 1)
    c, s, r = theta.cos().view(-1, 1, 1), theta.sin().view(-1, 1, 1), scale.view(-1, 1, 1)
    x, y = (c * dx + s * dy) / r, (c * dy - s * dx) / r  # inverse rotation, then unit scale
    dist = torch.empty_like(x)
    for k in kind.unique().tolist():
        mask = kind == k
        dist[mask] = SDF[k](x[mask], y[mask])
    # Half a pixel either side of the boundary is blended: distance in pixels = dist * radius * size / 2.
    return (0.5 - dist * r * (size / 2)).clamp(0, 1)


def _over(image: Tensor, cover: Tensor, colour: Tensor) -> Tensor:
    a = cover.unsqueeze(1)
    return image * (1 - a) + colour.view(-1, 3, 1, 1) * a


def _sample(n: int, gen: torch.Generator, style: Style) -> dict[str, Tensor]:
    """Every random parameter of `n` images, one row per image."""
    rand = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    span = lambda lo_hi, *shape: rand(*shape) * (lo_hi[1] - lo_hi[0]) + lo_hi[0]  # noqa: E731
    slots = (n, style.clutter_slots)
    scale = span(style.scale, n)
    reach = style.shift * (1 - 0.9 * scale)  # keeps the class shape (nearly) inside the image
    return {
        "back": rand(n, 3), "back2": rand(n, 3),
        "wave_angle": rand(n) * math.pi, "wave_freq": span((1.0, 6.0), n), "wave_phase": rand(n) * 2 * math.pi,
        "wave_amp": span(style.grating, n),
        "fore_offset": span(style.contrast, n, 3),
        "scale": scale, "cx": (rand(n) * 2 - 1) * reach, "cy": (rand(n) * 2 - 1) * reach,
        "theta": (rand(n) * 2 - 1) * math.radians(style.rotation),
        "clutter_kind": torch.where(rand(*slots) < style.line_p, LINE, torch.randint(0, LINE, slots, generator=gen)),
        "clutter_x": rand(*slots) * 2 - 1, "clutter_y": rand(*slots) * 2 - 1,
        "clutter_scale": span(style.clutter_scale, *slots), "clutter_theta": rand(*slots) * 2 * math.pi,
        "clutter_on": rand(*slots) < style.clutter_p, "clutter_front": rand(*slots) < style.clutter_front_p,
        "clutter_colour": rand(*slots, 3),
        "gain": span(style.gain, n), "light_angle": rand(n) * 2 * math.pi, "light_slope": rand(n) * style.slope,
        "noise": span(style.noise, n),
    }


def _render(labels: Tensor, p: dict[str, Tensor], size: int, gen: torch.Generator) -> Tensor:
    """Float images [N, 3, size, size] (about [0, 1]) of the given classes and parameters, plus noise from `gen`."""
    gx, gy = _grid(size)
    col = lambda v: v.view(-1, 1, 1)  # noqa: E731  per-image scalar -> broadcast over [N, H, W]

    # Background: a colour with a grating of a second colour.
    phase = col(p["wave_freq"]) * (gx * col(p["wave_angle"].cos()) + gy * col(p["wave_angle"].sin()))
    wave = col(p["wave_amp"]) * (0.5 + 0.5 * torch.sin(phase + col(p["wave_phase"])))
    image = _over(p["back"].view(-1, 3, 1, 1).expand(-1, 3, size, size), wave, p["back2"])

    # Class shape: its colour moves every channel the same way (towards the side with more room),
    # so the shape always differs in brightness and not only in hue.
    shape = _coverage(labels, p["cx"], p["cy"], p["scale"], p["theta"], size)
    sign = torch.where(p["back"].mean(1, keepdim=True) < 0.5, 1.0, -1.0)
    fore = (p["back"] + sign * p["fore_offset"]).clamp(0, 1)

    # Clutter: lines and small shapes of any kind, each behind or in front of the class shape.
    clutter = [(_coverage(p["clutter_kind"][:, k], p["clutter_x"][:, k], p["clutter_y"][:, k],
                          p["clutter_scale"][:, k], p["clutter_theta"][:, k], size) * col(p["clutter_on"][:, k]),
                 col(p["clutter_front"][:, k]), p["clutter_colour"][:, k]) for k in range(p["clutter_on"].shape[1])]
    for cover, front, colour in clutter:
        image = _over(image, cover * ~front, colour)
    image = _over(image, shape, fore)
    for cover, front, colour in clutter:
        image = _over(image, cover * front, colour)

    # Illumination (a global gain and a linear gradient), then sensor noise.
    slope = p["light_slope"]
    light = col(p["gain"]) + col(slope * p["light_angle"].cos()) * gx + col(slope * p["light_angle"].sin()) * gy
    image = image * light.unsqueeze(1)
    return image + p["noise"].view(-1, 1, 1, 1) * torch.randn(image.shape, generator=gen)


def _chunk_seed(seed: int, split: str, chunk: int) -> int:
    return int(hashlib.sha256(f"shapes/{seed}/{split}/{chunk}".encode()).hexdigest()[:15], 16)


def generate(n: int, size: int = 32, seed: int = 0, split: str = "train", style: Style = STYLE) -> Split:
    """`n` images of split `split` with balanced classes (image i has class i mod 10)."""
    labels = torch.arange(n) % len(CLASSES)
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        gen = torch.Generator().manual_seed(_chunk_seed(seed, split, start // CHUNK))
        # Parameters are drawn for a whole chunk even when fewer images are needed, so that a
        # shorter split is a prefix of a longer one; the noise, drawn last, is a prefix too.
        params = {k: v[: stop - start] for k, v in _sample(CHUNK, gen, style).items()}
        drawn = _render(labels[start:stop], params, size, gen)
        images[start:stop] = drawn.mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    return Split(images, labels)


def load(data_cfg: Any) -> Splits:
    """The three splits for `data_cfg` (sizes default to 5000/1000/1000), from the cache when present."""
    check_counts(data_cfg)
    folder = Path(data_cfg.root) / "shapes"
    splits = []
    for split, default in DEFAULT_SIZES.items():
        n = getattr(data_cfg, f"n_{split}") or default
        params = [GENERATOR_VERSION, split, n, data_cfg.image_size, data_cfg.seed, dataclasses.asdict(STYLE)]
        path = folder / f"{split}-{cache_key(*params)}.pt"
        cached = load_cache(path)
        if cached is None:
            began = time.perf_counter()
            images, labels = generate(n, data_cfg.image_size, data_cfg.seed, split)
            save_cache({"images": images, "labels": labels}, path)
            log.info("shapes: generated %d %s images in %.1fs -> %s", n, split, time.perf_counter() - began, path)
        else:
            images, labels = cached["images"], cached["labels"]
        splits.append(Split(images, labels))
    return Splits(*splits, classes=list(CLASSES))
