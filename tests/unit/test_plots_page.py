"""`mmops plots-page`: `dvc plots show` renders offline, from npm tarballs checked against their pins
before anything is read out of them."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile

import pytest

from mmops import plots_page
from mmops.cli import build_parser
from mmops.plots_page import Package, build_template, integrity
from tests.conftest import REPO


def _tarball(name: str, script: str) -> bytes:
    """An npm-style tarball holding `package/build/<name>.min.js` (and a decoy that must not be inlined)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member, text in ((f"package/build/{name}.min.js", script), ("package/README.md", "not inlined")):
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def registry(monkeypatch):
    """Three fake packages pinned to their real integrity, served by a download that counts its calls."""
    served = {name: _tarball(name, f"window.{name.replace('-', '_')} = 'the {name} build';")
              for name in ("vega", "vega-lite", "vega-embed")}
    packages = tuple(Package(name, "1.0.0", integrity(data)) for name, data in served.items())
    monkeypatch.setattr(plots_page, "PACKAGES", packages)
    downloads: list[str] = []

    def download(url: str) -> bytes:
        downloads.append(url)
        return served[next(p.name for p in packages if p.url == url)]

    monkeypatch.setattr(plots_page, "download", download)
    return served, downloads


def test_the_template_inlines_the_three_builds_and_leaves_dvc_only_the_plots_to_fill(registry, tmp_path):
    page = build_template(tmp_path / "plots" / "template.html", tmp_path / "npm").read_text()

    for name in ("vega", "vega-lite", "vega-embed"):
        assert f"the {name} build" in page
    assert page.index("the vega build") < page.index("the vega-lite build") < page.index("the vega-embed build")
    assert "not inlined" not in page
    assert page.count("{plot_divs}") == 1 and "{refresh_tag}" in page
    assert "{scripts}" not in page  # where dvc_render would put its CDN <script src> tags
    assert not re.search(r"<script[^>]*\bsrc=", page) and "http" not in page


def test_a_tarball_that_does_not_match_its_pin_is_refused_before_extraction(registry, tmp_path, monkeypatch):
    served, _ = registry
    served["vega"] = _tarball("vega", "tampered")
    opened = []
    monkeypatch.setattr(plots_page.tarfile, "open", lambda *a, **k: opened.append(a) or pytest.fail("extracted"))

    with pytest.raises(ValueError, match=r"vega 1\.0\.0: the tarball from https://registry\.npmjs\.org/"
                                         r"vega/-/vega-1\.0\.0\.tgz has integrity sha512-\S+, not the "
                                         r"pinned sha512-") as err:
        build_template(tmp_path / "template.html", tmp_path / "npm")

    assert integrity(served["vega"]) in str(err.value) and plots_page.PACKAGES[0].integrity in str(err.value)
    assert not opened and not (tmp_path / "npm" / "vega-1.0.0.tgz").exists()
    assert not (tmp_path / "template.html").exists()


def test_a_cached_tarball_that_matches_its_pin_is_reused_without_downloading(registry, tmp_path):
    _, downloads = registry
    build_template(tmp_path / "first.html", tmp_path / "npm")
    assert len(downloads) == 3
    assert sorted(p.name for p in (tmp_path / "npm").iterdir()) == [
        "vega-1.0.0.tgz", "vega-embed-1.0.0.tgz", "vega-lite-1.0.0.tgz"]

    build_template(tmp_path / "second.html", tmp_path / "npm")

    assert len(downloads) == 3
    assert (tmp_path / "first.html").read_text() == (tmp_path / "second.html").read_text()


def test_a_corrupted_cached_tarball_is_downloaded_again(registry, tmp_path):
    served, downloads = registry
    cached = tmp_path / "npm" / "vega-1.0.0.tgz"
    cached.parent.mkdir()
    cached.write_bytes(b"truncated")

    page = build_template(tmp_path / "template.html", tmp_path / "npm").read_text()

    assert downloads[0] == "https://registry.npmjs.org/vega/-/vega-1.0.0.tgz"
    assert cached.read_bytes() == served["vega"] and "the vega build" in page


@pytest.mark.parametrize("script", ["var page = '{scripts}';", "x = '</SCRIPT>'", "'{plot_divs}'"])
def test_a_build_that_would_break_the_template_is_refused(registry, tmp_path, monkeypatch, script):
    served, _ = registry
    served["vega-embed"] = _tarball("vega-embed", script)
    pinned = Package("vega-embed", "1.0.0", integrity(served["vega-embed"]))
    monkeypatch.setattr(plots_page, "PACKAGES", (*plots_page.PACKAGES[:2], pinned))

    with pytest.raises(ValueError, match="vega-embed 1.0.0: package/build/vega-embed.min.js contains"):
        build_template(tmp_path / "template.html", tmp_path / "npm")
    assert not (tmp_path / "template.html").exists()


def test_a_failed_download_names_the_url(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(plots_page.urllib.request, "urlopen", refuse)
    with pytest.raises(OSError, match="could not download https://registry.npmjs.org/x.tgz: network unreachable"):
        plots_page.download("https://registry.npmjs.org/x.tgz")


def test_the_cli_defaults_are_git_ignored():
    args = build_parser().parse_args(["plots-page"])
    for path in (args.out, f"{args.cache}/vega-5.20.2.tgz"):
        code = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO).returncode
        assert code == 0, f"{path} is not git-ignored"


@pytest.mark.slow
def test_dvc_plots_show_renders_the_committed_plots_offline_as_make_run_wires_it(tmp_path):
    """The real tarballs, and the Makefile's wiring: the template named in .dvc/config.local, relative to .dvc/."""
    project = tmp_path / "project"
    for path in ("dvc.yaml", "params.yaml", "artifacts/evaluate/confusion.csv", "artifacts/train/history.csv"):
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path, project / path)
    try:
        template = build_template(project / "artifacts/plots/template.html", tmp_path / "npm")
    except OSError as err:
        pytest.skip(f"the npm registry is unreachable, so the pinned tarballs cannot be fetched: {err}")
    for command in (["init", "--no-scm", "-q"], ["config", "--local", "plots.html_template",
                                                 "../artifacts/plots/template.html"], ["plots", "show", "-o", "out"]):
        subprocess.run(["dvc", *command], cwd=project, check=True, capture_output=True)

    page = (project / "out" / "index.html").read_text()
    assert "cdn.jsdelivr" not in page and not re.search(r"<script[^>]*\bsrc=", page)
    assert "/* vega 5.20.2 (BSD-3-Clause)" in page and "/* vega-embed 6.18.2 (BSD-3-Clause)" in page
    for plot in ("artifacts_evaluate_confusion_csv", "artifacts_train_history_csv"):
        assert f"vegaEmbed('#{plot}', spec)" in page
    assert "{plot_divs}" not in page and template.stat().st_size > 800_000
