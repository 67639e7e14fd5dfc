"""The one image decoder, used by cleaning and serving: what it accepts and how it refuses."""

import io

import numpy as np
import pytest
from PIL import Image

from mmops.modalities.media import MediaError, decode_image

LIMIT = 1_000_000


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (16, 16), (80 * i, 0, 0)) for i in range(3)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


@pytest.mark.parametrize(("data", "mode"), [
    (_encode(Image.new("RGBA", (16, 16), (1, 2, 3, 4)), "PNG"), "RGBA"),
    (_encode(Image.new("LA", (16, 16)), "PNG"), "LA"),
    (_encode(Image.new("P", (16, 16)), "PNG"), "P"),
    (_encode(Image.new("RGB", (16, 16)), "JPEG"), "RGB"),
    (_encode(Image.new("RGB", (16, 16)), "WEBP"), "RGB"),
    (_encode(Image.new("P", (16, 16)), "GIF"), "P"),
    (_encode(Image.new("RGB", (16, 16)), "BMP"), "RGB"),
], ids=["png-rgba", "png-la", "png-palette", "jpeg", "webp", "static-gif", "bmp"])
def test_common_web_images_decode(data, mode):
    image = decode_image(data, LIMIT)
    assert image.size == (16, 16) and image.mode == mode


@pytest.mark.parametrize(("data", "reason"), [
    (_encode(Image.new("RGB", (16, 16)), "TIFF"), "unreadable image: not a PNG, JPEG, WEBP, GIF or BMP image"),
    (_encode(Image.new("RGBA", (16, 16)), "ICO"), "unreadable image: not a PNG, JPEG, WEBP, GIF or BMP image"),
    (_animated_gif(), "unsupported image: animated GIF (3 frames)"),
    (_encode(Image.new("CMYK", (16, 16)), "JPEG"), "unsupported image: pixel mode CMYK"),
    (_encode(Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)), "PNG"), "unsupported image: pixel mode I;16"),
], ids=["tiff", "ico", "animated-gif", "cmyk-jpeg", "16-bit-png"])
def test_formats_modes_and_animations_outside_the_allowlist_are_refused(data, reason):
    with pytest.raises(MediaError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        decode_image(data, LIMIT)


def test_a_truncated_image_is_refused_naming_its_format():
    data = _encode(Image.effect_noise((64, 64), 50).convert("RGB"), "PNG")
    with pytest.raises(MediaError, match="unreadable image: truncated or corrupt PNG data"):
        decode_image(data[: len(data) // 2], LIMIT)


@pytest.mark.parametrize("data", [b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_messages_carry_no_internal_details(data):
    with pytest.raises(MediaError) as refused:
        decode_image(data, LIMIT)
    assert " at 0x" not in str(refused.value) and "BytesIO" not in str(refused.value)


def test_the_pixel_limit_is_checked_before_decoding():
    data = _encode(Image.new("L", (2000, 1000)), "PNG")
    with pytest.raises(MediaError, match="decompression bomb: 2000x1000 pixels exceeds 1000000"):
        decode_image(data, LIMIT)
