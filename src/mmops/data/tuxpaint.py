"""A three-modality sample: Tux Paint's stamps, from Debian's package `tuxpaint-stamps-default`.

Each stamp `NAME` under `usr/share/tuxpaint/stamps/<category>/...` has a picture (`NAME.png`;
some only `NAME.svg`), a description (`NAME.txt`: line 1 English, then `LANG.utf8=...` lines) and
spoken descriptions recorded by volunteers (`NAME_desc_LANG.ogg`). A sample is the picture, the
English caption and the **French** spoken description (Ogg Vorbis, copied byte for byte), labelled
with the top-level category folder. A stamp with no French clip is kept with its audio missing
(the data contract allows any modality to be absent per record).

A stamp whose picture is only an SVG is rendered to a PNG by resvg (`resvg-py`: the renderer and
the PNG encoder are compiled into its wheel, no system library and no fonts, so the same pinned
version gives the same bytes on every machine), at its own size or scaled down to fit
`SVG_MAX_SIDE`.

Not taken, each recorded in `rejects.csv` with its reason: an SVG resvg refuses (its message
kept), a stamp with no picture, one whose caption is empty, and every stamp of a category with
fewer than `min_per_class` stamps left. `NAME_mirror.png` / `NAME_flip.png`
(the stamp drawn mirrored, for the painting program) are not stamps.

The package is fetched with `apt-get download` and checked against the SHA256 that the package
index gives for this version, and against the one recorded here (so a build without apt, from a
`.deb` supplied by hand, is checked too). The build is deterministic: sorted rows, files copied
as they are in the package. Licence: GPL-2 (Debian's copyright file, copied into the folder as
`COPYRIGHT`; the data is fetched, never committed).
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mmops.data.versioning import build_beside_dvc_file

PACKAGE = "tuxpaint-stamps-default"
VERSION = "2022.06.04-1"
# the SHA256 Debian's package index (bookworm) gives for this version's .deb
SHA256 = "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34"
DEB_NAME = f"{PACKAGE}_{VERSION}_all.deb"
STAMPS = PurePosixPath("usr/share/tuxpaint/stamps")
COPYRIGHT = PurePosixPath(f"usr/share/doc/{PACKAGE}/copyright")
LANGUAGE = "fr"
MANIFEST_COLUMNS = ("sample_id", "image", "text", "audio", "label")
MIN_PER_CLASS = 15
VARIANTS = ("_mirror", "_flip")
SVG_MAX_SIDE = 512  # pixels: the PNG stamps' longest sides are 65-671 (median 200)


@dataclass
class Stamp:
    """One stamp's files in the package, by kind."""

    sample_id: str
    category: str
    files: dict[str, str] = field(default_factory=dict)  # "png" / "svg" / "txt" / "audio" -> member name


@dataclass(frozen=True)
class BuildReport:
    """What a build kept and left out."""

    samples: int
    with_audio: int
    by_label: dict[str, int]
    rejects: dict[str, int]  # reason -> stamps

    def __str__(self) -> str:
        rejected = ", ".join(f"{n} {reason}" for reason, n in sorted(self.rejects.items())) or "none"
        return (f"{self.samples} samples in {len(self.by_label)} categories, {self.with_audio} with a French "
                f"spoken description; left out: {rejected}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def index_sha256() -> str | None:
    """The SHA256 that apt's package index gives for this version, or None without apt (or
    without the version in its index)."""
    if shutil.which("apt-cache") is None:
        return None
    shown = subprocess.run(["apt-cache", "show", f"{PACKAGE}={VERSION}"], capture_output=True, text=True)
    for line in shown.stdout.splitlines():
        if line.startswith("SHA256:"):
            return line.split(":", 1)[1].strip()
    return None


def check_deb(deb: Path) -> Path:
    """`deb` if its SHA256 is the one recorded here and the one the package index gives (when
    apt has one); a RuntimeError naming the file otherwise."""
    actual = sha256_of(deb)
    indexed = index_sha256()
    for source, expected in (("recorded in mmops", SHA256), ("in apt's package index", indexed)):
        if expected is not None and actual != expected:
            raise RuntimeError(f"{deb}: SHA256 {actual} is not the {expected} {source} for {PACKAGE} {VERSION}")
    return deb


def fetch_deb(cache_dir: Path) -> Path:
    """The package's .deb in `cache_dir`, fetched with `apt-get download` unless already there,
    and checked (`check_deb`)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    deb = cache_dir / DEB_NAME
    if not deb.exists():
        if shutil.which("apt-get") is None:
            raise RuntimeError(f"apt-get is needed to fetch {PACKAGE}; without it, download {DEB_NAME} from "
                               f"https://deb.debian.org/debian/pool/main/t/tuxpaint-stamps/ and pass --deb")
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            subprocess.run(["apt-get", "download", f"{PACKAGE}={VERSION}"], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL)
            (Path(tmp) / DEB_NAME).replace(deb)
    return check_deb(deb)


def data_tar(deb: Path) -> bytes:
    """The `data.tar.*` member of a .deb (an `ar` archive: an 8-byte magic, then members with a
    60-byte header each, padded to even offsets)."""
    raw = Path(deb).read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb}: not a Debian package (no ar archive)")
    offset = 8
    while offset + 60 <= len(raw):
        header = raw[offset:offset + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode().strip())
        if name.startswith("data.tar"):
            return raw[offset + 60:offset + 60 + size]
        offset += 60 + size + (size % 2)
    raise ValueError(f"{deb}: no data.tar member")


def read_stamps(deb: Path) -> tuple[dict[str, Stamp], dict[str, bytes]]:
    """The package's stamps by sample id (their path under stamps/, `/` as `.`), and the
    contents of the files a build may copy, by path, read in one pass: the data is one xz
    stream, which cannot seek back cheaply."""
    stamps: dict[str, Stamp] = {}
    contents: dict[str, bytes] = {}
    audio_suffix = f"_desc_{LANGUAGE}.ogg"
    with tarfile.open(fileobj=io.BytesIO(data_tar(deb)), mode="r|*") as tar:
        for member in tar:
            path = PurePosixPath(member.name)  # "./usr/..." -> "usr/..."
            if not member.isfile():
                continue
            if path == COPYRIGHT:
                contents[str(path)] = tar.extractfile(member).read()
            if not path.is_relative_to(STAMPS):
                continue
            if path.name.endswith(audio_suffix):
                stem, kind = path.name[:-len(audio_suffix)], "audio"
            elif path.suffix in (".png", ".svg", ".txt"):
                stem, kind = path.stem, path.suffix[1:]
            else:
                continue
            if kind in ("png", "svg") and stem.endswith(VARIANTS):
                continue  # the stamp drawn mirrored or flipped, for the painting program: not a stamp
            relative = path.relative_to(STAMPS)
            sample_id = ".".join([*relative.parent.parts, stem])
            stamp = stamps.setdefault(sample_id, Stamp(sample_id, relative.parts[0]))
            stamp.files[kind] = str(path)
            contents[str(path)] = tar.extractfile(member).read()
    # a clip with neither a picture nor a description is not a stamp (one in this version)
    return {k: s for k, s in stamps.items() if set(s.files) - {"audio"}}, contents


def render_svg(svg: bytes, max_side: int = SVG_MAX_SIDE) -> bytes:
    """An SVG as PNG bytes (RGBA, transparent where the drawing is), at its own size, or zoomed
    out so its longest side is `max_side`. Raises ValueError with resvg's reason for an SVG it
    cannot render."""
    import resvg_py

    text = svg.decode("utf-8")
    try:
        png = bytes(resvg_py.svg_to_bytes(svg_string=text, skip_system_fonts=True))
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the IHDR chunk
        if max(width, height) > max_side:
            png = bytes(resvg_py.svg_to_bytes(svg_string=text, skip_system_fonts=True,
                                              zoom=max_side / max(width, height)))
    except Exception as err:  # resvg's own error type, whatever the binding's version calls it
        raise ValueError(str(err)) from err
    return png


def build_tuxpaint(deb: Path, out_dir: Path, min_per_class: int = MIN_PER_CLASS) -> BuildReport:
    """Write the sample (`metadata.csv`, `images/`, `audio/`, `rejects.csv`, `COPYRIGHT`) of the
    package `deb` into `out_dir`, which must not exist yet; the folder appears whole or not at all."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; the sample is only built into a new folder")
    stamps, contents = read_stamps(deb)
    kept, rejects, pictures = [], [], {}
    for stamp in sorted(stamps.values(), key=lambda s: s.sample_id):
        text = contents[stamp.files["txt"]].decode("utf-8") if "txt" in stamp.files else ""
        caption = (text.splitlines() or [""])[0].strip()
        if not caption:
            rejects.append((stamp, "no English caption" if {"png", "svg"} & set(stamp.files) else "no picture"))
            continue
        if "png" in stamp.files:
            pictures[stamp.sample_id] = contents[stamp.files["png"]]
        elif "svg" in stamp.files:
            try:
                pictures[stamp.sample_id] = render_svg(contents[stamp.files["svg"]])
            except ValueError as err:
                rejects.append((stamp, f"SVG resvg cannot render: {err}"))
                continue
        else:
            rejects.append((stamp, "no picture"))
            continue
        kept.append((stamp, caption))
    counts = Counter(stamp.category for stamp, _ in kept)
    small = {c for c, n in counts.items() if n < min_per_class}
    rejects += [(s, f"category with fewer than {min_per_class} stamps") for s, _ in kept if s.category in small]
    kept = [(s, caption) for s, caption in kept if s.category not in small]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (staging / "images").mkdir()
        (staging / "audio").mkdir()
        rows = []
        for stamp, caption in kept:
            image = f"images/{stamp.sample_id}.png"
            (staging / image).write_bytes(pictures[stamp.sample_id])
            audio = ""
            if "audio" in stamp.files:
                audio = f"audio/{stamp.sample_id}.ogg"
                (staging / audio).write_bytes(contents[stamp.files["audio"]])
            rows.append([stamp.sample_id, image, caption, audio, stamp.category])
        if str(COPYRIGHT) not in contents:
            raise ValueError(f"{deb}: no {COPYRIGHT} (the licence must travel with the data)")
        (staging / "COPYRIGHT").write_bytes(contents[str(COPYRIGHT)])
        _write_csv(staging / "metadata.csv", MANIFEST_COLUMNS, rows)
        _write_csv(staging / "rejects.csv", ("sample_id", "label", "reason"),
                   sorted([s.sample_id, s.category, reason] for s, reason in rejects))
        staging.replace(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildReport(len(rows), sum(1 for r in rows if r[3]), dict(sorted(Counter(r[4] for r in rows).items())),
                       dict(sorted(Counter(reason for _, reason in rejects).items())))


def _write_csv(path: Path, header: tuple[str, ...], rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def ensure_tuxpaint(out_dir: Path, cache_dir: Path, deb: Path | None = None,
                    min_per_class: int = MIN_PER_CLASS) -> str:
    """Build the sample into `out_dir` from `deb` (a .deb supplied by hand, checked) or from the
    package fetched into `cache_dir`. When a `.dvc` file beside `out_dir` records it, the folder
    is checked against it (an existing folder that matches is left as it is). Returns what was done."""
    def build() -> str:
        package = check_deb(Path(deb)) if deb else fetch_deb(cache_dir)
        return f"{build_tuxpaint(package, out_dir, min_per_class)} from {PACKAGE} {VERSION} (GPL-2)"

    return build_beside_dvc_file(Path(out_dir), build)
