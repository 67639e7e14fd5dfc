"""Do the fast tests notice when the core breaks? Each mutation below is a plausible bug in a
core guarantee; this applies each, alone, to a copy of the repo and runs the fast suite there,
which must fail. Prints one line per mutation and exits non-zero if any survived.

    .venv/bin/python tests/mutations.py          # from the repo root (a few minutes)
    .venv/bin/python tests/mutations.py --list   # just the mutations

tests/test_mutations.py runs it in the slow suite (so CI keeps it true as the code changes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> (file, original text, mutated text). The original must occur exactly once, so a
# refactor that moves the code makes this script fail loudly instead of testing nothing.
MUTATIONS = {
    "serving ignores the missing-modality mask": (
        "src/mmops/serving/pyfunc.py",
        "explain(self.model, features, masks, self.device)",
        "explain(self.model, features, {m: torch.ones_like(p) for m, p in masks.items()}, self.device)",
    ),
    "features are not reordered to the split manifest's sample ids": (
        "src/mmops/features/cache.py",
        "order = torch.tensor([position[s] for s in sample_ids], dtype=torch.long)",
        "order = torch.arange(len(sample_ids))",
    ),
    "fit keeps the last epoch instead of the best": (
        "src/mmops/training/train.py",
        'if row["val_loss"] < best_loss:',
        "if True:",
    ),
    "fusion weights fixed at 0.5 / 0.5": (
        "src/mmops/models/fusion/late.py",
        "self.fusion_weights.copy_(best)",
        "self.fusion_weights.fill_(0.5)",
    ),
    "the split lets near-duplicate images straddle splits": (
        "src/mmops/stages/data.py",
        "links=near + family_links(families)",
        "links=family_links(families)",
    ),
    "validate stops the run on one row's unknown label": (
        "src/mmops/data/validate.py",
        "e.ExpectColumnValuesToBeInSet(column=LABEL, value_set=list(params.labels), severity=WARNING)",
        "e.ExpectColumnValuesToBeInSet(column=LABEL, value_set=list(params.labels), severity=CRITICAL)",
    ),
    "the feature cache's suite lets NaN through": (
        "src/mmops/data/suites.py",
        'e.ExpectColumnValuesToBeInSet(column=f"{m.name}_finite", value_set=[True])',
        'e.ExpectColumnValuesToBeInSet(column=f"{m.name}_finite", value_set=[True, False])',
    ),
    "drift never flags a measure (image brightness, text length)": (
        "src/mmops/data/drift.py",
        "drifted = bool(test.pvalue < params.alpha and test.statistic > params.min_ks_statistic)",
        "drifted = False",
    ),
}

COPIED = ("src", "tests", "params.yaml", "dvc.yaml", "data.dvc", "constraints.txt", "pyproject.toml",
          ".gitignore", "Makefile", "Dockerfile", ".dockerignore", "flows", "prefect.yaml", "shift/twitter.dvc")


def copy_repo(workdir: Path) -> Path:
    """The repo's code and tests in `workdir`, as a git repository (some tests ask git)."""
    for item in COPIED:
        source = REPO / item
        if source.is_dir():
            shutil.copytree(source, workdir / item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (workdir / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, workdir / item)
    if (REPO / ".cache").exists():  # the sample's npm tarball, so no test fetches it again
        (workdir / ".cache").symlink_to(REPO / ".cache")
    subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
    return workdir


def mutant(workdir: Path, name: str) -> Path:
    """A copy of the repo with mutation `name` applied."""
    file, original, mutated = MUTATIONS[name]
    copy_repo(workdir)
    target = workdir / file
    text = target.read_text()
    if text.count(original) != 1:
        raise SystemExit(f"mutation {name!r}: {original!r} is not in {file} exactly once; update tests/mutations.py")
    target.write_text(text.replace(original, mutated))
    return workdir


def killed(workdir: Path) -> tuple[bool, str]:
    """Run the fast suite in `workdir` (its own src first on the path); True if a test failed."""
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow"],
        cwd=workdir, env=env, capture_output=True, text=True,
    )
    failed = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return result.returncode == 1 and bool(failed), failed[0] if failed else result.stdout[-500:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        print("\n".join(MUTATIONS))
        return 0
    # The unmutated copy must pass: then any failure in a mutant is the mutation's doing.
    with tempfile.TemporaryDirectory(prefix="mmops-baseline-") as tmp:
        failed, detail = killed(copy_repo(Path(tmp)))
    if failed:
        print(f"the unmutated copy fails, so mutants prove nothing: {detail}")
        return 2
    print("baseline: the unmutated copy passes the fast suite", flush=True)
    survived = []
    for name in MUTATIONS:
        with tempfile.TemporaryDirectory(prefix="mmops-mutant-") as tmp:
            caught, detail = killed(mutant(Path(tmp), name))
        print(f"{'killed  ' if caught else 'SURVIVED'} {name}: {detail}", flush=True)
        if not caught:
            survived.append(name)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
