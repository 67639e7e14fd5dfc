"""The embedded sample dataset: Google's Noto emoji from the npm package `emoji-datasource-google`.

One sample per base emoji (skin-tone variants are not separate entries there, and are not
used), category `Component` dropped: the 64 px PNG, the lower-cased name and short names as
text, the category as label. The build is deterministic (same bytes on every machine), so the
md5 recorded in `data.dvc` matches wherever it is rebuilt. Licences: the package is MIT, the
Noto images Apache-2.0.
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
from pathlib import Path

from mmops.data.versioning import commit_if_matching

PACKAGE = "emoji-datasource-google"
VERSION = "16.0.0"
# Published integrity of the tarball (`npm view emoji-datasource-google@16.0.0 dist.integrity`).
INTEGRITY = "sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A=="
TARBALL = f"{PACKAGE}-{VERSION}.tgz"
IMAGE_DIR = "package/img/google/64/"
DROPPED_CATEGORIES = frozenset({"Component"})
MANIFEST_COLUMNS = ("sample_id", "image", "text", "label")


def _integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def fetch_package(cache_dir: Path) -> Path:
    """Return the package tarball, fetched with `npm pack` into `cache_dir` unless already
    there, after checking it against the published integrity hash."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / TARBALL
    if not tarball.exists():
        if shutil.which("npm") is None:
            raise RuntimeError("npm is needed to fetch the sample dataset; install Node.js and npm")
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            subprocess.run(
                ["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--silent"],
                check=True, stdout=subprocess.DEVNULL,
            )
            (Path(tmp) / TARBALL).replace(tarball)
    actual = _integrity(tarball)
    if actual != INTEGRITY:
        tarball.unlink()
        raise RuntimeError(f"{tarball}: integrity {actual} does not match the published {INTEGRITY}")
    return tarball


def sample_text(entry: dict) -> str:
    """The emoji's name and short names, lower-cased, without repeats: 'grinning face; grinning'."""
    parts: list[str] = []
    for part in [entry.get("name") or "", *(entry.get("short_names") or [])]:
        part = part.strip().lower()
        if part and part not in parts:
            parts.append(part)
    return "; ".join(parts)


def select_entries(emoji: list[dict]) -> list[dict]:
    """Base emoji that have a Google image, outside the dropped categories, in the package's order."""
    chosen = [
        e for e in emoji
        if e.get("has_img_google") and e.get("category") not in DROPPED_CATEGORIES
    ]
    return sorted(chosen, key=lambda e: (e["sort_order"], e["unified"]))


def build_sample(tarball: Path, out_dir: Path) -> int:
    """Write the sample (`metadata.csv` + `images/`) into `out_dir`, which must not exist yet.
    The folder appears whole or not at all. Returns the number of samples."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; the sample is only built into a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            emoji = json.load(tar.extractfile("package/emoji.json"))
            entries = select_entries(emoji)
            wanted = {IMAGE_DIR + e["image"] for e in entries}
            (staging / "images").mkdir()
            for member in tar:
                if member.name in wanted and member.isfile():
                    data = tar.extractfile(member).read()
                    (staging / "images" / Path(member.name).name).write_bytes(data)
                    wanted.discard(member.name)
        if wanted:
            raise RuntimeError(f"{tarball}: images missing from the package: {sorted(wanted)[:5]}")
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
