"""Media files, safely: paths that must stay inside the data root, and the one place an image
is decoded and checked before anything uses it."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError


class MediaError(ValueError):
    """A media file cannot be used; the message reads `<kind>: <detail>`."""


# What the encoder is trained and served on. Anything else is refused rather than converted on
# a guess: CMYK and 16-bit samples would be squashed into 8-bit RGB, TIFF/ICO carry several
# images, and an animated image is many frames where the model sees one.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA")


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Fully decode an image from its bytes. Refuses, from the header alone and before decoding:
    formats outside `FORMATS`, decompression bombs, pixel modes outside `MODES` and animations;
    then truncated or corrupt data. Messages name the problem, never PIL's internals."""
    try:
        # only the allowed formats' parsers ever see the bytes
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise MediaError(f"unreadable image: not a {', '.join(FORMATS[:-1])} or {FORMATS[-1]} image") from err
    width, height = image.size
    if width * height > max_pixels:
        raise MediaError(f"decompression bomb: {width}x{height} pixels exceeds {max_pixels}")
    if image.mode not in MODES:
        raise MediaError(f"unsupported image: pixel mode {image.mode} (accepted: {', '.join(MODES)})")
    if getattr(image, "is_animated", False):
        raise MediaError(f"unsupported image: animated {image.format} ({image.n_frames} frames)")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise MediaError(f"unreadable image: truncated or corrupt {image.format} data") from err
    return image


def load_image(path: Path, max_pixels: int) -> Image.Image:
    """`decode_image` of a file."""
    return decode_image(Path(path).read_bytes(), max_pixels)


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes: identical files share it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def resolve_media(root: Path, relative: str) -> Path:
    """The file a manifest path points to, which must stay inside `root`.
    Raises `ValueError` for empty paths and paths that escape it (`../`, absolute, symlinks out)."""
    if not relative or not relative.strip():
        raise ValueError("empty path")
    candidate = Path(relative)
    if candidate.is_absolute():
        raise ValueError(f"absolute path {relative!r} is outside {root}/")
    root_resolved = Path(root).resolve()
    resolved = (root_resolved / candidate).resolve()
    if not resolved.is_relative_to(root_resolved):
        raise ValueError(f"path {relative!r} escapes {root}/")
    return resolved
