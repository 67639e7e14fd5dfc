"""Random training views of an emoji picture, for the augment stage and for on-the-fly fine-tuning.

The labels are coarse categories, so a view may change anything but what the category depends on:
geometry a little, colours, and the art style (outlines, stroke width), the last so that a model
trained on one vendor's emoji copes with another's. Emoji have transparent backgrounds that the
encoder composites on white, so every op respects alpha: geometry works on premultiplied RGBA and
fills with transparency, colour ops touch RGB only. Views are a pure function of (image, strength,
seed), whatever the global random state, which they leave alone.
"""

from __future__ import annotations

import functools
import random

import numpy as np
import torch
from PIL import Image, ImageChops, ImageFilter, ImageOps
from torchvision.transforms import v2


def _check_strength(strength: float) -> None:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"augmentation strength must be in [0, 1], got {strength!r}")


@functools.lru_cache(maxsize=64)
def _colour(strength: float) -> v2.Transform:
    """Colour ops on a uint8 RGB tensor (v2's ColorJitter, grayscale and posterize refuse 4 channels)."""
    s = strength
    return v2.Compose([
        v2.RandomApply([v2.ColorJitter(brightness=0.4 * s, contrast=0.4 * s, saturation=0.4 * s, hue=0.05 * s)],
                       p=0.8 * s),
        v2.RandomGrayscale(p=0.1 * s),
        v2.RandomPosterize(bits=8 - round(4 * s), p=0.2 * s),
    ])


@functools.lru_cache(maxsize=64)
def _geometry(strength: float) -> v2.Transform:
    """Geometry and blur on a premultiplied float RGBA tensor: what moves in leaves transparency behind."""
    s = strength
    return v2.Compose([
        # Label-safe: no category ("Flags", "Symbols", ...) depends on left versus right.
        v2.RandomHorizontalFlip(p=0.5 * s),
        v2.RandomApply([v2.RandomAffine(degrees=15 * s, translate=(0.1 * s, 0.1 * s), scale=(1 - 0.25 * s, 1.0),
                                        interpolation=v2.InterpolationMode.BILINEAR, fill=0.0)], p=0.8 * s),
        v2.RandomApply([v2.GaussianBlur(kernel_size=3, sigma=(0.1, 0.1 + 0.9 * s))], p=0.2 * s),
    ])


def _on_white(image: Image.Image) -> Image.Image:
    return Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB")


def _art_style(image: Image.Image, strength: float, rng: random.Random) -> Image.Image:
    """PIL-only style ops torchvision lacks: a line-drawing rendering and a thicker or thinner stroke."""
    rgb, alpha = image.convert("RGB"), image.getchannel("A")
    if rng.random() < 0.15 * strength:  # outline: the drawing as dark lines on white, on the same shape
        # Pad by repeating the border first: PIL's kernel filters leave a false edge around the canvas.
        flat = Image.fromarray(np.pad(np.asarray(_on_white(image).convert("L")), 1, mode="edge"))
        lines = flat.filter(ImageFilter.CONTOUR).crop((1, 1, 1 + image.width, 1 + image.height))
        lines = ImageOps.autocontrast(lines).convert("RGB")
        rgb = Image.blend(rgb, lines, strength * rng.uniform(0.5, 1.0))
    if rng.random() < 0.3 * strength:  # stroke width: grow or shrink the silhouette by a pixel
        if rng.random() < 0.5:
            grown = alpha.filter(ImageFilter.MaxFilter(3))
            # New pixels take their darkest neighbour's colour, as a drawn outline would.
            edge = _on_white(image).filter(ImageFilter.MinFilter(3))
            rgb = Image.composite(edge, rgb, ImageChops.subtract(grown, alpha).point(lambda v: 255 if v else 0))
            alpha = grown
        else:
            alpha = alpha.filter(ImageFilter.MinFilter(3))
    rgb.putalpha(alpha)
    return rgb


def augment_image(image: Image.Image, strength: float, seed: int) -> Image.Image:
    """A random view of `image`: RGBA, the same size, a pure function of (image, strength, seed).

    `strength` in [0, 1] scales every op's probability and magnitude; 0 returns an exact RGBA copy.
    """
    _check_strength(strength)
    rgba = image.convert("RGBA")
    if strength == 0:
        return rgba.copy()
    # What hides under transparent pixels must not leak into the view (contrast, blur, stroke growth).
    rgba = Image.composite(rgba, Image.new("RGBA", rgba.size, (0, 0, 0, 0)), rgba.getchannel("A"))
    rgba = _art_style(rgba, strength, random.Random(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x = v2.functional.pil_to_tensor(rgba)
        rgb = _colour(strength)(x[:3]).float() / 255
        alpha = x[3:].float() / 255
        out = _geometry(strength)(torch.cat([rgb * alpha, alpha]))
    alpha = out[3:].clamp(0, 1)
    rgb = torch.where(alpha > 0, out[:3] / alpha.clamp_min(1e-6), 0.0).clamp(0, 1)
    return v2.functional.to_pil_image((torch.cat([rgb, alpha]) * 255).round().to(torch.uint8), mode="RGBA")
