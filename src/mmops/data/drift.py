"""Data drift: a check of new data against the training data's reference profile
(`mmops.data.profile`).

`compare` tests a new data version against the profile, on the rows the reference has not
seen: the reference's own rows, compared with themselves, would pull every test towards "no
drift". One check per quantity, each with a two-sample test from scipy:

- labels: a class of the reference that is absent (where `min_class_rows` of it were to be
  expected), or a class it never saw, is named; the mix as a whole is a chi-square
  goodness-of-fit test against the reference's shares;
- measures: a Kolmogorov-Smirnov test of each one against the reference's values;
- features: a classifier two-sample test (Lopez-Paz & Oquab, "Revisiting Classifier
  Two-Sample Tests", ICLR 2017) on the features projected on the reference's top principal
  components: a logistic regression learns to tell new rows from reference rows on one half,
  and a Mann-Whitney U test of its scores on the other half says whether it can (its AUC: 0.5
  is "indistinguishable"). A Kolmogorov-Smirnov test of each component apart was tried
  first: it saw inverted images in only 5 of 32 components, as their features move in
  combinations of components more than along any one of them.

A check is flagged only when the difference is both significant (p below `alpha`) and large
enough to matter (an effect-size floor, strictly exceeded), so that a large data set does not
trip on trivia. Drift is a reason to retrain, not to refuse: the pipeline records it (validate:
labels and measures; featurize: features) and goes on, unless `drift.fail_validate`.
`check_manifest` reads, cleans, encodes (as featurize does) and compares another manifest (say
the Twitter sample) for `mmops drift <manifest>`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmops import artifacts
from mmops.config import DriftParams, Layout, Params
from mmops.data.clean import read_rows
from mmops.data.manifest import ID, LABEL
from mmops.data.profile import features_present, load_profile, measure, new_rows
from mmops.features.cache import EncoderMismatch, FeatureCache, check_encoders
from mmops.modalities import build_modalities
from mmops.modalities.base import Modality

NOTHING_NEW = "no new rows, nothing to compare"
# the checks `compare` runs: labels and measures need the manifest only, features need encoding
LABELS, MEASURES, FEATURES = "labels", "measures", "features"


@dataclass(frozen=True)
class Check:
    """One quantity compared with the reference."""

    name: str  # "labels", "class 'Flags'", "image.brightness", "image features", ...
    statistic: float  # what is compared with `threshold`: a share change, a KS statistic, a classifier's AUC
    p_value: float | None  # None where no test is involved (a class present or not)
    threshold: float
    drifted: bool
    message: str  # one line, for people


@dataclass(frozen=True)
class DriftReport:
    """Every check of one data version's new rows against the reference; drifted if any check is."""

    reference_rows: int
    rows: int  # the rows compared: those the reference has not seen
    checks: tuple[Check, ...]
    rejected: int = 0  # rows of the new manifest that could not be used (clean's rules)
    # rows left out because the reference holds their content; None: the reference does not
    # record its rows (a profile from an older mmops), so every row was compared
    seen: int | None = None
    changed: int = 0  # rows under an id of the reference whose content changed: compared as new

    @property
    def nothing_new(self) -> bool:
        """Every row was one the reference had: there was nothing to compare."""
        return self.rows == 0 and self.seen is not None

    @property
    def note(self) -> str:
        """Which rows were compared, for people."""
        if self.nothing_new:
            return f"{NOTHING_NEW} (all {self.seen} rows are the reference's own)"
        if self.seen is None:
            return (f"{self.rows} rows compared, the reference's own among them: the reference records no row ids "
                    "and content hashes (made by an older mmops); retrain to compare new rows only")
        changed = f", {self.changed} of them under an id of the reference with other content" if self.changed else ""
        return f"{self.rows} new rows compared{changed}; {self.seen} rows the reference already had left out"

    @property
    def drifted(self) -> bool:
        return any(check.drifted for check in self.checks)

    @property
    def failures(self) -> list[str]:
        """The messages of the checks that drifted."""
        return [check.message for check in self.checks if check.drifted]

    def check(self, name: str) -> Check:
        """The check called `name`."""
        found = [check for check in self.checks if check.name == name]
        if not found:
            raise KeyError(f"no drift check {name!r} (there are: {', '.join(c.name for c in self.checks)})")
        return found[0]

    def to_dict(self) -> dict[str, Any]:
        return {"drifted": self.drifted, "reference_rows": self.reference_rows, "rows": self.rows,
                "seen": self.seen, "changed": self.changed, "note": self.note, "rejected": self.rejected,
                "checks": [dataclasses.asdict(check) for check in self.checks]}


# -- the checks ------------------------------------------------------------------------------

def _absent_check(name: str, reference_rows: int, share: float, total: int, params: DriftParams) -> Check:
    """A class of the reference that no row compared has. Its statistic is the rows it was
    expected to have (its reference share of them): missing one that few rows would hold, or
    that the reference itself had only a few of, is chance, not drift."""
    expected = share * total
    drifted = reference_rows >= params.min_class_rows and expected >= params.min_class_rows
    detail = f"reference {share:.1%}, {reference_rows} rows; about {expected:.3g} expected in {total}"
    message = (f"class '{name}' is absent ({detail})" if drifted else
               f"class '{name}': no rows, too few expected to tell ({detail}; drift.min_class_rows "
               f"{params.min_class_rows})")
    return Check(f"class '{name}'", expected, None, float(params.min_class_rows), drifted, message)


def label_checks(reference: dict[str, int], labels: pd.Series, params: DriftParams) -> list[Check]:
    """Absent and new classes by name, and the label mix as a whole, against the reference's counts."""
    ref_total = sum(reference.values())
    counts = labels.value_counts()
    total = int(counts.sum())
    ref_share = {c: n / ref_total for c, n in reference.items()}
    share = {str(c): n / total for c, n in counts.items()} if total else {}
    checks = [_absent_check(c, reference[c], ref_share[c], total, params) for c in reference if c not in share]
    checks += [Check(f"class '{c}'", share[c], None, 0.0, True, f"class '{c}' is new: {share[c]:.1%}, not in the "
                     "reference") for c in sorted(share) if c not in ref_share]
    if not total:
        return checks + [Check("labels", 1.0, None, params.max_label_shift, True, "labels: no rows to compare")]
    observed = np.array([counts.get(c, 0) for c in reference], dtype=np.float64)
    if observed.sum() == 0:
        p_value = 0.0  # not one row of a class the reference knows
    else:
        # the expected counts must add up to the observed ones: rows of new classes are left out here
        p_value = float(stats.chisquare(observed, np.array(list(ref_share.values())) * observed.sum()).pvalue)
    moves = {c: share.get(c, 0.0) - ref_share.get(c, 0.0) for c in sorted(set(share) | set(ref_share))}
    worst = max(moves, key=lambda c: abs(moves[c]))
    shift = abs(moves[worst])
    drifted = bool(p_value < params.alpha and shift > params.max_label_shift)
    verdict = "label shares moved" if drifted else "label shares as in the reference"
    return checks + [Check("labels", shift, p_value, params.max_label_shift, drifted,
                           f"{verdict}: largest move '{worst}' {ref_share.get(worst, 0.0):.1%} -> "
                           f"{share.get(worst, 0.0):.1%} (chi-square p={p_value:.2g})")]


def measure_check(name: str, reference: list[float], values: list[float], params: DriftParams) -> Check:
    """A Kolmogorov-Smirnov test of one measure against the reference's values."""
    if not values:
        return Check(name, 1.0, None, params.min_ks_statistic, True, f"{name}: no values in the new data")
    test = stats.ks_2samp(reference, values)
    drifted = bool(test.pvalue < params.alpha and test.statistic > params.min_ks_statistic)
    return Check(name, float(test.statistic), float(test.pvalue), params.min_ks_statistic, drifted,
                 f"{name}: {'moved' if drifted else 'as in the reference'}, median {np.median(reference):.4g} -> "
                 f"{np.median(values):.4g} (KS {test.statistic:.2f}, p={test.pvalue:.2g})")


def feature_check(name: str, reference: dict[str, Any], values: np.ndarray, params: DriftParams) -> Check:
    """The classifier two-sample test of one modality's features (rows of `values`) against the
    reference's, on its principal components."""
    check_name = f"{name} features"
    ref = np.array(reference["projected"])
    if min(len(values), len(ref)) < 4:
        return Check(check_name, 0.5, None, params.max_auc, False,
                     f"{check_name}: too few rows to test ({len(values)} new, {len(ref)} in the reference)")
    # what PCA.transform does: centre on the reference mean, project on its components
    new = (values - np.array(reference["mean"])) @ np.array(reference["components"]).T
    rows = np.vstack([ref, new])
    is_new = np.r_[np.zeros(len(ref)), np.ones(len(new))]
    # fit on one half, score the other: when nothing moved, the held-out scores of the two groups
    # are exchangeable, so the rank test's p-value is valid (cross-validated scores would not be)
    fit_x, test_x, fit_y, test_y = train_test_split(rows, is_new, test_size=0.5, stratify=is_new, random_state=0)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000))
    scores = classifier.fit(fit_x, fit_y).decision_function(test_x)
    test = stats.mannwhitneyu(scores[test_y == 1], scores[test_y == 0], alternative="greater")
    auc = float(test.statistic / ((test_y == 1).sum() * (test_y == 0).sum()))  # U, scaled, is the AUC
    drifted = bool(test.pvalue < params.alpha and auc > params.max_auc)
    return Check(check_name, auc, float(test.pvalue), params.max_auc, drifted,
                 f"{check_name}: {'moved' if drifted else 'as in the reference'}, a classifier tells new rows from "
                 f"the reference's with AUC {auc:.2f} (0.5: not at all; p={test.pvalue:.2g})")


def compare(profile: dict[str, Any], frame: pd.DataFrame, features: FeatureCache | None, root: Path,
            modalities: Sequence[Modality], params: DriftParams = DriftParams(), rejected: int = 0,
            parts: Sequence[str] = (LABELS, MEASURES, FEATURES)) -> DriftReport:
    """Check the rows of `frame` (a manifest's rows, canonical columns, media under `root`) that
    the reference has not seen, with their `features` (None: the feature checks are skipped),
    against the reference `profile`: the checks named in `parts`. No new rows: no checks."""
    frame, seen, changed = new_rows(profile, frame, root, modalities)
    if seen is not None and frame.empty:
        return DriftReport(int(profile["rows"]), 0, (), rejected, seen, changed)
    checks = label_checks(profile["labels"], frame[LABEL], params) if LABELS in parts else []
    if MEASURES in parts:
        values = measure(frame, root, modalities)
        checks += [measure_check(name, reference, values.get(name, []), params)
                   for name, reference in profile["measures"].items()]
    if features is not None and FEATURES in parts:
        expected = {m: ref["encoder"] for m, ref in profile["features"].items()}
        # the precision and device may differ (a reference made on a GPU in bf16, a check on a CPU): the
        # difference it makes is far below what the classifier test can see
        check_encoders({m: features.encoders[m] for m in expected if m in features.encoders}, expected,
                       made_by="the new data's features", expected_by="the reference profile", ignore=("dtype", "device"),
                       remedy="the reference was made with other encoders: retrain, or check with the same ones")
        new = features_present(features, frame[ID], "the new data's features")
        checks += [feature_check(m, ref, new[m], params) for m, ref in profile["features"].items()]
    return DriftReport(int(profile["rows"]), len(frame), tuple(checks), rejected, seen, changed)


# -- another manifest, end to end ------------------------------------------------------------

def check_manifest(params: Params, manifest: Path, profile: dict[str, Any], drift: DriftParams = DriftParams(),
                   root: Path | None = None, device: str | None = None) -> DriftReport:
    """`mmops drift <manifest>`: read, clean, encode and compare another manifest with the
    reference profile."""
    from mmops.features.shards import encode_manifest

    root = Path(root) if root is not None else Path(manifest).parent
    rows, rejects = read_rows(params, manifest, root)
    features = encode_manifest(params, rows, root, device)
    return compare(profile, rows, features, root, build_modalities(params.modalities), drift, rejected=len(rejects))


# -- in the pipeline: against the last training's reference, recorded, never refusing ---------

def last_reference(layout: Layout, labels: Sequence[str]) -> tuple[dict[str, Any] | None, str | None]:
    """The last training's profile, or None and why it cannot speak for data of `labels`. It
    is the previous training's output, not a DVC dependency of the stages that read it (that
    would be a cycle): they rerun when the data changes, which is when it should be compared."""
    if not layout.reference.exists():
        return None, "no reference yet (the first training writes one)"
    try:
        profile = load_profile(layout.reference)
    except ValueError as err:
        return None, str(err)
    if sorted(profile["labels"]) != sorted(labels):
        return None, f"{layout.reference} was trained on other classes (another dataset): not comparable"
    return profile, None


def record(path: Path, reference: Path, report: DriftReport | None, skipped: str | None = None) -> dict[str, Any]:
    """Write a drift record atomically (a report, or why there is none) and return it."""
    content = ({"reference": None, "skipped": skipped} if report is None
               else {"reference": str(reference), **report.to_dict()})
    artifacts.write_json(path, content)
    return content


def feature_drift(params: Params, layout: Layout, frame: pd.DataFrame, features: FeatureCache) -> dict[str, Any]:
    """Featurize's drift step: the classifier two-sample test of each modality's features, on the
    rows of `frame` (the clean manifest) the last training's reference has not seen, recorded
    in `layout.feature_drift`. It never stops the run: the gate judges the retrained model."""
    profile, skipped = last_reference(layout, params.data.labels)
    report = None
    if profile is not None:
        try:
            report = compare(profile, frame, features, params.data.root, build_modalities(params.modalities),
                             params.drift, parts=(FEATURES,))
        except EncoderMismatch as err:  # other encoders (a params change): another feature space
            skipped = f"not comparable: {err}"
    return record(layout.feature_drift, layout.reference, report, skipped)


def summarise(recorded: dict[str, Any]) -> str:
    """One line for a recorded check (`record`): the retraining report, MLflow and the card."""
    if recorded.get("reference") is None:
        return f"not checked: {recorded.get('skipped', 'no reference')}"
    if not recorded.get("checks") and recorded.get("seen") is not None:
        return recorded.get("note") or NOTHING_NEW
    moved = [c["message"] for c in recorded["checks"] if c["drifted"]]
    compared = recorded.get("note") or f"{recorded.get('rows', '?')} rows compared"
    return (f"DRIFTED: {'; '.join(moved)}" if moved else "none") + f" ({compared})"


def render_markdown(report: DriftReport, title: str = "Drift check") -> str:
    """The report as Markdown: a verdict line, which rows were compared, what moved, then every
    check in a table."""
    verdict = "DRIFTED" if report.drifted else NOTHING_NEW if report.nothing_new else "no drift"
    lines = [f"# {title}: {verdict}", "",
             f"{report.note}; the reference has {report.reference_rows} rows"
             + (f" ({report.rejected} unusable rows left out)" if report.rejected else "") + ".", ""]
    if report.nothing_new:
        return "\n".join(lines)
    if report.drifted:
        lines += ["What moved:", "", *[f"- {message}" for message in report.failures], ""]
    lines += ["| check | statistic | p-value | threshold | drifted | |", "|---|---|---|---|---|---|"]
    for c in report.checks:
        p_value = "" if c.p_value is None else f"{c.p_value:.2g}"
        lines.append(f"| {c.name} | {c.statistic:.3g} | {p_value} | {c.threshold:.3g} | "
                     f"{'yes' if c.drifted else 'no'} | {c.message} |")
    return "\n".join(lines) + "\n"
