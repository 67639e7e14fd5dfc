"""Data stages: validate, clean and split the raw manifest (params and the layout in, files out)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from mmops import artifacts
from mmops.config import Layout, Params
from mmops.data.clean import clean_manifest, hash_column, over_budget, read_rows, rejects_by_reason, shared_files
from mmops.data.manifest import LABEL, read_manifest, require_columns, source_names
from mmops.data.split import SPLITS, assign_splits
from mmops.data.suites import check_cleaned
from mmops.modalities import build_modalities


class DriftError(ValueError):
    """New data moved away from the last training's reference beyond the `drift:` thresholds."""


def _raw_manifest(params: Params) -> pd.DataFrame:
    return read_manifest(params.data.manifest, source_names(params.data, params.modalities))


def validate(params: Params, layout: Layout) -> dict[str, Any]:
    """Run the Great Expectations suite on the raw manifest; write the result (JSON and a
    readable HTML page); stop on problems with the manifest as a whole. Row problems are listed
    and left to `clean`, which rejects those rows within its budget."""
    from mmops.data.expectations import render_html
    from mmops.data.validate import ValidationError, validate_manifest

    frame = _raw_manifest(params)
    report = validate_manifest(frame, params.data, build_modalities(params.modalities))
    artifacts.write_json(layout.validation, report.to_dict())
    artifacts.write_text(layout.validation_report, render_html([report], str(params.data.manifest)))
    if not report.success:
        listed = "\n  ".join(report.failures)
        raise ValidationError(
            f"{params.data.manifest} failed validation ({len(report.failures)} problem(s)):\n  {listed}\n"
            f"(report: {layout.validation_report})"
        )
    drifted = check_drift(params, layout, frame)
    return {"rows": len(frame), "success": True, "row_problems": len(report.warnings), "drifted": drifted}


def check_drift(params: Params, layout: Layout, frame: pd.DataFrame) -> bool | None:
    """Compare the manifest's rows that the last training's reference has not seen (those with a
    configured label: the others are clean's rejects) with that reference, when there is one:
    labels and each modality's measures (features need encoding: featurize checks them).
    Records the result and goes on, as drift is a reason to retrain; stops only where
    `drift.fail_validate` asks for it. None: no reference that speaks for this data."""
    from mmops.data.drift import LABELS, MEASURES, compare, last_reference, record, render_markdown

    # The record is not a DVC output: it depends on what ran before (see `last_reference`).
    profile, skipped = last_reference(layout, params.data.labels)
    if profile is None:
        record(layout.drift, layout.reference, None, skipped)
        return None
    rows = frame[frame[LABEL].isin(params.data.labels)]
    report = compare(profile, rows, None, params.data.root, build_modalities(params.modalities), params.drift,
                     parts=(LABELS, MEASURES))
    record(layout.drift, layout.reference, report)
    if report.drifted and params.drift.fail_validate:
        raise DriftError(
            f"{params.data.manifest} drifted from the data the last model was trained on ({layout.reference}):\n"
            + render_markdown(report, "Drift check")
            + "\nThis stop is drift.fail_validate: true. If the change is intended, set `fail_validate: false` "
              "under `drift:` in params.yaml, commit it (a model registers only from committed params) and run "
              "`dvc repro`: the run records the drift, retrains, registers the model and the gate judges it.")
    return report.drifted


def clean(params: Params, layout: Layout) -> dict[str, Any]:
    """Keep usable rows, record every dropped row with its reason, and count them."""
    frame = _raw_manifest(params)
    require_columns(frame, params.data.manifest, source_names(params.data, params.modalities))
    modalities = build_modalities(params.modalities)
    kept, rejects = clean_manifest(frame, params.data.root, params.data.labels, modalities)
    summary = {
        "rows": len(frame),
        "kept": len(kept),
        "rejected": len(rejects),
        "rejected_by_reason": rejects_by_reason(rejects),
        "shared_media": {m.name: shared_files(kept[hash_column(m.name)]) for m in modalities if m.media},
    }
    artifacts.write_csv(layout.rejects, rejects)  # written either way: it is what to read when clean stops
    problem = over_budget(rejects, len(frame), params.clean.max_reject_fraction)
    if problem:
        raise ValueError(f"{params.data.manifest}: {problem}. Every reject and its reason: {layout.rejects}")
    suite = check_cleaned(kept, rejects, params.data, params.clean, modalities, str(layout.clean_manifest))
    artifacts.write_json(layout.clean_expectations, suite.to_dict())
    if not suite.success:
        listed = "\n  ".join(suite.failures)
        raise ValueError(f"the cleaned manifest fails its suite ({len(suite.failures)} problem(s)):\n  {listed}")
    artifacts.write_csv(layout.clean_manifest, kept)
    artifacts.write_json(layout.clean_metrics, summary)
    return summary


def split(params: Params, layout: Layout) -> dict[str, Any]:
    """Assign each cleaned sample to train/val/test by a hash of its group (identical media,
    near-duplicate media, families), and report what grouping beyond identical files changed."""
    from mmops.data.split import family_key, family_links, group_table, near_duplicate_links, split_report

    modalities = build_modalities(params.modalities)
    frame = artifacts.read_csv(layout.clean_manifest)
    media = [hash_column(m.name) for m in modalities if m.media]
    near = [link for m in modalities if m.near_duplicate_fact
            for link in near_duplicate_links(list(frame[f"{m.name}_{m.near_duplicate_fact}"]),
                                             m.near_duplicate_distance(params.split.near_duplicate_distance))]
    rule = params.split
    if rule.family_column and rule.family_column not in frame.columns:
        raise ValueError(f"params.yaml split.family_column {rule.family_column!r} is not a column of "
                         f"{layout.clean_manifest}: name a modality (e.g. text), or \"\" for no families")
    families = [family_key(str(text), rule.family_words, rule.family_separator) for text in frame[rule.family_column]] \
        if rule.family_column else [""] * len(frame)
    grouped = assign_splits(frame.assign(family=families), params.split, media, links=near + family_links(families))
    artifacts.write_csv(layout.split_manifest, grouped)
    artifacts.write_csv(layout.split_groups, group_table(grouped, media, near, rule.family_column,
                                                         rule.family_separator))
    report = split_report(assign_splits(frame, params.split, media), grouped, near)
    artifacts.write_json(layout.split_metrics, report)
    return {name: report["rows"][name] for name in SPLITS}


def augment(params: Params, layout: Layout) -> dict[str, Any]:
    """Make `augment.views` views of each train-split sample with each modality's own
    augmentations, and one view of it from each drawing set of `augment.drawings` that has it:
    the views' manifest (each with its source's label, group and split) and their media files,
    written whole or not at all. Off (`augment.enabled: false`, no drawings), both are written
    empty, so featurize and train see no views. A drawing set's rows that cleaning would reject
    are counted by reason; an absent set is an error."""
    from mmops.data.augment import MANIFEST, VIEWS, drawing_views, make_views, view_columns

    modalities = build_modalities(params.modalities)
    frame = artifacts.read_csv(layout.split_manifest)
    drawings: dict[str, Any] = {}
    # a drawing set draws what it draws: a row may leave any modality to its sample
    optional = dataclasses.replace(params, modalities=tuple(dataclasses.replace(m, required=False)
                                                             for m in params.modalities))
    with artifacts.atomic_dir(layout.augment) as folder:
        (folder / VIEWS).mkdir()
        parts = [make_views(frame, modalities, params.augment, params.data.root, folder / VIEWS)
                 if params.augment.enabled else pd.DataFrame(columns=view_columns(modalities))]
        for name, manifest in params.augment.drawings.items():
            manifest = Path(manifest)
            if not manifest.exists():
                raise FileNotFoundError(f"augment.drawings.{name}: {manifest} is absent (the OpenMoji set: "
                                        "`mmops sample --vendor openmoji`)")
            drawn, rejects = read_rows(optional, manifest, labels=params.data.labels)
            parts.append(drawing_views(frame, modalities, params.data.root, name, drawn, manifest.parent,
                                       folder / VIEWS))
            drawings[name] = {"views": len(parts[-1]), "rejected": len(rejects),
                              "rejects_by_reason": rejects_by_reason(rejects)}
        views = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
        artifacts.write_csv(folder / MANIFEST, views)
    return {"views": len(views), "train_samples": int((frame["split"] == "train").sum()),
            "enabled": params.augment.enabled, "drawings": drawings}
