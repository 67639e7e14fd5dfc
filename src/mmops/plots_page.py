"""An offline page template for `dvc plots show`.

DVC's own page loads vega, vega-lite and vega-embed from cdn.jsdelivr.net, so without the internet
it is blank. `build_template` inlines the three libraries' browser builds (the versions dvc_render's
CDN tags name) into one HTML template, fetched from the npm registry, the one network a run
already needs, and pinned by the integrity npm publishes for each tarball (`npm view
<package>@<version> dist.integrity`), checked before anything is read out of it.

dvc_render fills a template by plain `str.replace` of `{scripts}` (where its CDN tags go: left out
here, so none is emitted), `{plot_divs}` and `{refresh_tag}`; an inlined script containing one of
them, or `</script`, would break the page, so such a build is refused.

`make run` builds it once and names it in the git-ignored `.dvc/config.local` (see the Makefile);
by hand: `mmops plots-page`, then `dvc plots show --html-template artifacts/plots/template.html`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mmops import artifacts

log = logging.getLogger(__name__)

TIMEOUT_S = 60
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")


@dataclass(frozen=True)
class Package:
    """An npm package pinned by its tarball's integrity; its minified browser build is what the page inlines."""

    name: str
    version: str
    integrity: str  # "sha512-<base64>", as npm publishes it

    @property
    def url(self) -> str:
        return f"https://registry.npmjs.org/{self.name}/-/{self.name}-{self.version}.tgz"

    @property
    def tarball(self) -> str:
        return f"{self.name}-{self.version}.tgz"

    @property
    def build(self) -> str:
        return f"package/build/{self.name}.min.js"


# In load order (vega-lite and vega-embed use vega); all three BSD-3-Clause.
PACKAGES = (
    Package("vega", "5.20.2", "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw=="),
    Package("vega-lite", "5.2.0", "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw=="),
    Package("vega-embed", "6.18.2", "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg=="),
)

HEAD = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>DVC plots</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem; }
table { border-spacing: 15px; }
</style>
"""
BODY = """</head>
<body>
{plot_divs}
</body>
</html>
"""


def integrity(data: bytes) -> str:
    """npm's SRI form of `data`'s sha512."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def download(url: str) -> bytes:
    """The bytes at `url`; an OSError naming it if they cannot be had."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.read()
    except OSError as err:  # URLError, HTTPError and timeouts are all OSErrors
        raise OSError(f"could not download {url}: {err}") from err


def verify(package: Package, data: bytes) -> bytes:
    """`data` if it is the pinned tarball; a ValueError otherwise, before anything reads it."""
    actual = integrity(data)
    if actual != package.integrity:
        raise ValueError(f"{package.name} {package.version}: the tarball from {package.url} has integrity "
                         f"{actual}, not the pinned {package.integrity}; refusing to use it")
    return data


def fetch(package: Package, cache_dir: Path) -> bytes:
    """The verified tarball: the cached copy if it still matches the pin, else a fresh download (then cached)."""
    cached = Path(cache_dir) / package.tarball
    if cached.is_file():
        data = cached.read_bytes()
        if integrity(data) == package.integrity:
            return data
        log.warning("%s does not match the pinned integrity; downloading it again", cached)
    data = verify(package, download(package.url))
    with artifacts.atomic_path(cached) as tmp:
        tmp.write_bytes(data)
    return data


def browser_build(package: Package, tarball: bytes) -> str:
    """The minified browser build inside a verified tarball, refused if it would break the template."""
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = next((m for m in tar.getmembers() if m.name == package.build and m.isfile()), None)
        if member is None:
            raise ValueError(f"{package.name} {package.version}: no file {package.build} in {package.url}")
        script = tar.extractfile(member).read().decode("utf-8")
    found = [p for p in PLACEHOLDERS if p in script] + (["</script"] if "</script" in script.lower() else [])
    if found:
        raise ValueError(f"{package.name} {package.version}: {package.build} contains {', '.join(found)}, "
                         "which would break an inline <script> in a dvc_render template")
    return script


def build_template(out: Path, cache_dir: Path) -> Path:
    """Write the self-contained template to `out` (atomically) and return its path."""
    scripts = "".join(f"<script>/* {p.name} {p.version} (BSD-3-Clause), {p.build} */\n"
                      f"{browser_build(p, fetch(p, cache_dir))}\n</script>\n" for p in PACKAGES)
    return artifacts.write_text(Path(out), HEAD + scripts + BODY)
