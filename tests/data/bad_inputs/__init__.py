"""The bad-input corpus, built from code into a data root (no committed binaries).

`ROW_CASES` are files or manifest rows that spoil one row: each builder writes what it needs
under `root` and returns that row; `reason` is exactly what clean records for it (`{root}` is
the data root), or None when the row is fine after all and must be kept. `manifest_*` write a
whole manifest that is broken (or merely unusual) as a file.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tests.conftest import TINY_LABELS

MODES = "1, L, LA, P, PA, RGB, RGBA"
HEADER = "sample_id,image,text,label"


def _png(size: int = 16, mode: str = "RGBA", color=(200, 30, 30, 255)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, (size, size), color).save(out, format="PNG")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 5000, height: int = 5000) -> bytes:
    """A valid PNG header claiming width x height pixels, in a few dozen bytes: decoding it
    would allocate 25 MP, which is what the pixel limit must refuse before decoding."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))


def _jpeg(mode: str, color) -> bytes:
    out = io.BytesIO()
    Image.new(mode, (16, 16), color).save(out, format="JPEG")
    return out.getvalue()


def _animated_gif() -> bytes:
    out = io.BytesIO()
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return out.getvalue()


def _static_gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (16, 16), 3).save(out, format="GIF")
    return out.getvalue()


def _png16() -> bytes:
    out = io.BytesIO()
    Image.new("I;16", (16, 16), 40000).save(out, format="PNG")
    return out.getvalue()


def row(sample_id: str, image: str, text: str = "a good caption", label: str = TINY_LABELS[0]) -> dict[str, str]:
    return {"sample_id": sample_id, "image": image, "text": text, "label": label}


def _file(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], dict[str, str]]:
    def build(root: Path) -> dict[str, str]:
        (root / "bad").mkdir(parents=True, exist_ok=True)
        (root / "bad" / name).write_bytes(data() if callable(data) else data)
        return row("bad", f"bad/{name}")
    return build


def _symlink_out(root: Path) -> dict[str, str]:
    outside = root.parent / "outside.png"
    outside.write_bytes(_png())
    (root / "bad").mkdir(parents=True, exist_ok=True)
    (root / "bad" / "link.png").symlink_to(outside)
    return row("bad", "bad/link.png")


def _good_image(name: str, **values: str) -> Callable[[Path], dict[str, str]]:
    """A row whose image is fine (its own colour, so no two cases share content) but with `values`."""
    def build(root: Path) -> dict[str, str]:
        (root / "bad").mkdir(parents=True, exist_ok=True)
        (root / "bad" / f"{name}.png").write_bytes(_png(color=(len(name) * 9 % 256, 2, 250, 255)))
        return {**row("bad", f"bad/{name}.png"), **values}
    return build


@dataclass(frozen=True)
class RowCase:
    build: Callable[[Path], dict[str, str]]
    reason: str | None  # exactly what clean records; None: the row is usable and kept


ROW_CASES: dict[str, RowCase] = {
    "truncated_png": RowCase(_file("truncated.png", lambda: _png(64)[:60]),
                             "unreadable image: truncated or corrupt PNG data"),
    "zero_byte_file": RowCase(_file("empty.png", b""),
                              "unreadable image: not a PNG, JPEG, WEBP, GIF or BMP image"),
    "png_bomb": RowCase(_file("bomb.png", png_bomb), "decompression bomb: 5000x5000 pixels exceeds 4000000"),
    # the bytes decide the format, not the name: a JPEG called .png is a JPEG, and fine
    "jpeg_named_png": RowCase(_file("photo.png", lambda: _jpeg("RGB", (10, 200, 10))), None),
    "static_gif": RowCase(_file("still.gif", _static_gif), None),
    "animated_gif": RowCase(_file("moving.gif", _animated_gif), "unsupported image: animated GIF (2 frames)"),
    "png_16_bit": RowCase(_file("deep.png", _png16), f"unsupported image: pixel mode I;16 (accepted: {MODES})"),
    "cmyk_jpeg": RowCase(_file("print.jpg", lambda: _jpeg("CMYK", (0, 50, 100, 0))),
                         f"unsupported image: pixel mode CMYK (accepted: {MODES})"),
    "path_up_and_out": RowCase(lambda root: row("bad", "../../etc/passwd"),
                               "bad image path: path '../../etc/passwd' escapes {root}/"),
    "absolute_path": RowCase(lambda root: row("bad", "/etc/passwd"),
                             "bad image path: absolute path '/etc/passwd' is outside {root}/"),
    "symlink_out_of_data": RowCase(_symlink_out, "bad image path: path 'bad/link.png' escapes {root}/"),
    "missing_file": RowCase(lambda root: row("bad", "bad/gone.png"), "image file not found"),
    "unknown_label": RowCase(_good_image("zoo", label="Zoo"), "unknown label: 'Zoo'"),
    "duplicated_id": RowCase(_good_image("again", sample_id="s0"),
                             "duplicate sample_id: first on line 2"),
    "whitespace_only_text": RowCase(_good_image("blank", text=" \t  "), "empty text"),
    "ten_mb_text": RowCase(_good_image("long", text="word " * 2 * 1024 * 1024),
                           "text too long: 10485759 characters (max_chars 10000)"),
}


def manifest_text(rows: list[dict[str, str]], *, header: str = HEADER, newline: str = "\n") -> str:
    import csv

    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    for r in rows:
        writer.writerow([r.get(column, "") for column in header.split(",")])
    return header + newline + out.getvalue()
