"""Do the fast tests notice when the core breaks? Each mutation below is a plausible bug in a
core guarantee, with the fast test that must catch it. This applies each, alone, to a copy of
the repo and runs its test there, which must fail (and first checks that every named test passes
on the unmutated copy, so a failure is the mutation's doing). Prints a table, one line per
mutation, and exits non-zero if any survived.

    .venv/bin/python tests/mutations.py          # from the repo root (about two minutes)
    .venv/bin/python tests/mutations.py --full   # each mutant against the whole fast suite
    .venv/bin/python tests/mutations.py --list   # just the mutations and their tests

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

# name -> (file, original text, mutated text, the fast test that kills it). The original must
# occur exactly once, so a refactor that moves the code makes this script fail loudly instead of
# testing nothing; a renamed test makes the baseline fail.
MUTATIONS = {
    "serving ignores the missing-modality mask": (
        "src/mmops/serving/pyfunc.py",
        "explain(self.model, features, masks, self.device)",
        "explain(self.model, features, {m: torch.ones_like(p) for m, p in masks.items()}, self.device)",
        "tests/unit/test_serving.py::test_a_record_with_one_modality_gets_exactly_that_modalitys_prediction",
    ),
    "features are not reordered to the split manifest's sample ids": (
        "src/mmops/features/cache.py",
        "order = torch.tensor([position[s] for s in sample_ids], dtype=torch.long)",
        "order = torch.arange(len(sample_ids))",
        "tests/unit/test_stages.py::test_each_modality_alone_is_scored_on_the_test_samples_that_have_it",
    ),
    "fit keeps the last epoch instead of the best": (
        "src/mmops/training/train.py",
        'if row["val_loss"] < best_loss:',
        "if True:",
        "tests/unit/training/test_train.py::test_the_kept_epoch_is_the_one_with_the_lowest_validation_loss_of_the_fused_prediction",
    ),
    "alignment pairs a sample's image with a text it does not have": (
        "src/mmops/models/fusion/align.py",
        "both = present[a] & present[b]",
        "both = torch.ones_like(present[a])",
        "tests/unit/models/test_alignment.py::test_a_sample_without_one_of_the_modalities_is_left_out_of_the_loss",
    ),
    "fusion weights fixed at 0.5 / 0.5": (
        "src/mmops/models/fusion/late.py",
        "self.fusion_weights.copy_(best)",
        "self.fusion_weights.fill_(0.5)",
        "tests/unit/models/test_fusion.py::test_validation_step_puts_the_weight_on_the_modality_that_knows_the_answer",
    ),
    "trust fusion ignores each modality's confidence": (
        "src/mmops/models/fusion/trust.py",
        "logits = coefficients[:, 0] + coefficients[:, 1] * confidence",
        "logits = coefficients[:, 0] + 0 * confidence",
        "tests/unit/models/test_fusion_methods.py::test_trust_fusion_weighs_each_modality_per_sample_by_its_confidence",
    ),
    "the split lets near-duplicate images straddle splits": (
        "src/mmops/stages/data.py",
        "links=near + family_links(families)",
        "links=family_links(families)",
        "tests/unit/data/test_split.py::test_the_split_stage_keeps_near_duplicates_and_families_together",
    ),
    "validate stops the run on one row's unknown label": (
        "src/mmops/data/validate.py",
        "e.ExpectColumnValuesToBeInSet(column=LABEL, value_set=list(params.labels), severity=WARNING)",
        "e.ExpectColumnValuesToBeInSet(column=LABEL, value_set=list(params.labels), severity=CRITICAL)",
        "tests/unit/data/test_validate.py::test_validate_stage_writes_result_and_goes_on_past_row_problems",
    ),
    "the feature cache's suite lets NaN through": (
        "src/mmops/data/suites.py",
        'e.ExpectColumnValuesToBeInSet(column=f"{m.name}_finite", value_set=[True])',
        'e.ExpectColumnValuesToBeInSet(column=f"{m.name}_finite", value_set=[True, False])',
        "tests/unit/data/test_suites.py::test_nan_features_are_named_by_sample",
    ),
    "drift never flags a measure (image brightness, text length)": (
        "src/mmops/data/drift.py",
        "drifted = bool(test.pvalue < params.alpha and test.statistic > params.min_ks_statistic)",
        "drifted = False",
        "tests/unit/data/test_drift.py::test_validate_records_drift_and_goes_on_by_default",
    ),
    "the gate judges the bare difference instead of the interval's lower end": (
        "src/mmops/registry/gate.py",
        "check(low >= -params.max_regression,",
        "check(observed >= -params.max_regression,",
        "tests/unit/registry/test_gate.py::test_a_regression_within_tolerance_but_uncertain_beyond_it_is_refused",
    ),
    "the margin is measured against the worst modality instead of the best": (
        "src/mmops/registry/gate.py",
        "margins = fused - per_resample.max(axis=0)",
        "margins = fused - per_resample.min(axis=0)",
        "tests/unit/registry/test_gate.py::test_a_fused_model_between_its_modalities_is_refused_for_the_best_one",
    ),
    "the drift classifier is scored on the rows it was fitted on": (
        "src/mmops/data/drift.py",
        "scores = classifier.fit(fit_x, fit_y).decision_function(test_x)",
        "scores = classifier.fit(fit_x, fit_y).decision_function(fit_x); test_y = fit_y",
        "tests/unit/data/test_drift.py::test_the_drift_classifier_is_scored_on_rows_it_was_not_fitted_on",
    ),
    "drift compares the rows the reference was made of too": (
        "src/mmops/data/profile.py",
        "keep = np.array([key is None or key not in content for key in",
        "keep = np.array([True for key in",
        "tests/unit/data/test_drift.py::test_only_rows_the_reference_has_not_seen_are_compared",
    ),
    "an absent class is flagged however few of its rows were expected": (
        "src/mmops/data/drift.py",
        "drifted = reference_rows >= params.min_class_rows and expected >= params.min_class_rows",
        "drifted = True",
        "tests/unit/data/test_drift.py::test_a_class_absent_where_fewer_than_min_class_rows_were_expected_or_seen_is_not_flagged",
    ),
    "near-duplicate pairs are indexed from 0 instead of the block's start, beyond the first block": (
        "src/mmops/data/split.py",
        "i, j = present[start + a], present[b]",
        "i, j = present[a], present[b]",
        "tests/unit/data/test_split.py::test_near_duplicate_pairs_beyond_the_first_block_name_their_own_rows",
    ),
    "clean stops at exactly the reject budget instead of above it": (
        "src/mmops/data/clean.py",
        "len(rejects) / rows <= max_fraction",
        "len(rejects) / rows < max_fraction",
        "tests/unit/data/test_clean.py::test_rejects_exactly_at_the_budget_go_on",
    ),
    "the encoder-identity check compares only the fields both sides record": (
        "src/mmops/features/cache.py",
        "for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)",
        "for key in sorted(set(a) & set(b)) if a.get(key) != b.get(key)",
        "tests/unit/features/test_identity.py::test_an_identity_missing_a_field_the_other_side_records_is_a_mismatch",
    ),
    "validation and test samples get augmented views too": (
        "src/mmops/data/augment.py",
        'train = frame[frame["split"] == "train"]',
        "train = frame",
        "tests/unit/data/test_augment.py::test_only_train_samples_get_views_and_each_keeps_its_sources_label_group_and_split",
    ),
    "the drift reference is built from the augmented views too": (
        "src/mmops/data/split_features.py",
        "    return cache, by_split, frame",
        "    return cache, by_split, rows",
        "tests/unit/data/test_augment.py::test_featurize_encodes_the_views_and_train_learns_from_them_but_its_reference_does_not",
    ),
    "a resumed run does not restore the random streams": (
        "src/mmops/training/train.py",
        'checkpoints.set_rng_state(streams, state["rng"])',
        "None",
        "tests/unit/training/test_resume.py::test_a_run_killed_mid_way_and_resumed_ends_with_the_uninterrupted_runs_weights",
    ),
    "serving encodes a fine-tuned model's images with the packaged encoder": (
        "src/mmops/serving/pyfunc.py",
        "self.encoders[m.name] = m.encoder(device, dtype, tuned.get(m.name))",
        "self.encoders[m.name] = m.encoder(device, dtype)",
        "tests/unit/training/test_finetune.py::test_serving_encodes_with_the_models_own_encoder_and_answers_as_evaluate_does",
    ),
    "evaluate scores a fine-tuned model on the pretrained encoder's cached features": (
        "src/mmops/stages/model.py",
        '    for m in build_modalities(params.modalities):  # its own encoder makes a fine-tuned model\'s test features',
        '    for m in ():  # its own encoder makes a fine-tuned model\'s test features',
        "tests/unit/training/test_finetune.py::test_evaluate_scores_the_test_images_through_the_fine_tuned_encoder",
    ),
    "a modality's temperature is fitted on validation rows that lack it": (
        "src/mmops/models/fusion/base.py",
        "rows = present[name].cpu() if name in present else several",
        "rows = torch.ones(len(target), dtype=torch.bool) if name in present else several",
        "tests/unit/models/test_temperature.py::test_each_modality_is_calibrated_on_the_validation_rows_that_have_it",
    ),
    "a record with one modality is served at the fused temperature": (
        "src/mmops/models/fusion/base.py",
        "if m in self.temperatures and bool(only.any()):",
        "if False:",
        "tests/unit/models/test_fusion_methods.py::test_a_calibrated_record_with_one_modality_is_answered_at_that_modalitys_temperature",
    ),
    "a feature constant in training is divided by its near-zero spread": (
        "src/mmops/models/fusion/parts.py",
        "torch.where(std < self.CONSTANT, torch.ones_like(std), std)",
        "std.clamp_min(1e-6)",
        "tests/unit/models/test_fusion.py::test_a_feature_constant_in_training_is_centred_not_blown_up_by_a_tiny_spread",
    ),
    "fine-tuning ignores --resume and starts afresh": (
        "src/mmops/training/finetune.py",
        "state = checkpoints.load(checkpoint, run) if checkpoint and resume else None",
        "state = None",
        "tests/unit/training/test_finetune.py::test_a_fine_tuning_run_killed_mid_way_and_resumed_ends_as_the_uninterrupted_run",
    ),
    "a resumed fine-tuning run does not restore its random streams": (
        "src/mmops/training/finetune.py",
        "        checkpoints.set_rng_state(streams, state[\"rng\"])\n",
        "",
        "tests/unit/training/test_finetune.py::test_a_fine_tuning_run_killed_mid_way_and_resumed_ends_as_the_uninterrupted_run",
    ),
    "fine-tuning leaves out the drawing sets' views": (
        "src/mmops/training/finetune.py",
        'if name == "train" and len(drawn):',
        "if False:",
        "tests/unit/training/test_finetune.py::test_fine_tuning_learns_from_a_drawing_sets_views_of_the_training_samples",
    ),
    "a drawing view reaches validation or test": (
        "src/mmops/data/augment.py",
        'for _, drawing in drawn[drawn[ID].isin(training.index)].iterrows():\n        sample = training.loc[drawing[ID]]',
        'for _, drawing in drawn[drawn[ID].isin(frame[ID])].iterrows():\n        sample = frame.set_index(ID, drop=False).loc[drawing[ID]]',
        "tests/unit/data/test_augment.py::test_a_drawing_set_gives_each_training_sample_it_has_one_view_with_the_drawings_picture",
    ),
    "the fusion regret compares a modality with fused on every row, not the rows that have it": (
        "src/mmops/evaluation/shift.py",
        "(fused[rows] == y).mean()),",
        "(fused == target).mean()),",
        "tests/unit/evaluation/test_shift.py::test_a_modality_is_scored_and_compared_only_on_the_rows_that_have_it",
    ),
    "the gate lets a challenger through whatever its regret under shift": (
        "src/mmops/registry/gate.py",
        'ok = regret["regret"] <= params.max_shift_regret',
        "ok = True",
        "tests/unit/registry/test_gate.py::test_a_challenger_whose_fusion_loses_to_one_modality_under_shift_is_refused_naming_the_set",
    ),
    "the shift set's test rows are not the test split's ids": (
        "src/mmops/evaluation/shift.py",
        'in_test = rows[ID].isin(test_ids).to_numpy()',
        'in_test = ~rows[ID].isin(test_ids).to_numpy()',
        "tests/unit/test_shift_stage.py::test_shift_scores_fused_and_each_modality_on_all_rows_and_on_the_test_splits_ids",
    ),
    "fine-tuning chooses its epoch on the val split alone, whatever train.select_on says": (
        "src/mmops/training/finetune.py",
        'return sum([row["val_loss"], *(row[f"select_{name}_loss"] for name in sets)]) / (1 + len(sets))',
        'return row["val_loss"]',
        "tests/unit/training/test_finetune.py::test_select_on_chooses_the_epoch_on_the_val_split_and_a_sets_drawings_of_the_val_ids",
    ),
    "a selection set's train and test ids join the choice of epoch": (
        "src/mmops/training/finetune.py",
        "rows = rows[rows[ID].isin(val_ids)].reset_index(drop=True)",
        "rows = rows.reset_index(drop=True)",
        "tests/unit/training/test_finetune.py::test_select_on_chooses_the_epoch_on_the_val_split_and_a_sets_drawings_of_the_val_ids",
    ),
    "choosing an epoch on a selection set changes what is trained": (
        "src/mmops/training/finetune.py",
        "batch_size=params.batch_size, generator=torch.Generator(), **loading)",
        "batch_size=params.batch_size, **loading)",
        "tests/unit/training/test_finetune.py::test_select_on_changes_which_epoch_is_kept_not_what_is_trained",
    ),
    "fine-tuning the multilevel image encoder sends no gradient through its pooled blocks": (
        "src/mmops/modalities/image_encoder.py",
        "                pooled.append(x.mean(dim=(2, 3)))",
        "                pooled.append(x.detach().mean(dim=(2, 3)))",
        "tests/unit/modalities/test_image_encoder.py::test_the_multilevel_encoder_fine_tunes_through_its_pooled_blocks",
    ),
    "the multilevel image encoder no longer keeps the plain encoder's features first": (
        "src/mmops/modalities/image_encoder.py",
        "return torch.cat([head, *pooled], dim=1)",
        "return torch.cat([*pooled, head], dim=1)",
        "tests/unit/modalities/test_image_encoder.py::test_the_multilevel_encoder_keeps_the_plain_features_first_and_adds_three_pooled_blocks",
    ),
}

COPIED = ("src", "tests", "params.yaml", "dvc.yaml", "data.dvc", "constraints.txt", "pyproject.toml",
          ".gitignore", "Makefile", "Dockerfile", ".dockerignore", "flows", "prefect.yaml", "shift/twitter.dvc",
          "styles/openmoji.dvc")


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
    file, original, mutated, _ = MUTATIONS[name]
    copy_repo(workdir)
    target = workdir / file
    text = target.read_text()
    if text.count(original) != 1:
        raise SystemExit(f"mutation {name!r}: {original!r} is not in {file} exactly once; update tests/mutations.py")
    target.write_text(text.replace(original, mutated))
    return workdir


def run_tests(workdir: Path, tests: list[str]) -> tuple[int, list[str], str]:
    """Run `tests` (node ids; none: the whole fast suite) in `workdir`, its own src first on the
    path: pytest's exit code, the failed node ids, and the tail of its output."""
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", *tests],
        cwd=workdir, env=env, capture_output=True, text=True,
    )
    failed = [line.split()[1] for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return result.returncode, failed, result.stdout[-800:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--full", action="store_true", help="run the whole fast suite against each mutant")
    args = parser.parse_args()
    if args.list:
        for name, (file, _, _, test) in MUTATIONS.items():
            print(f"{name}\n    in {file}, killed by {test}")
        return 0
    named = sorted({test for *_, test in MUTATIONS.values()})
    # The unmutated copy must pass: then any failure in a mutant is the mutation's doing.
    with tempfile.TemporaryDirectory(prefix="mmops-baseline-") as tmp:
        code, failed, tail = run_tests(copy_repo(Path(tmp)), [] if args.full else named)
    if code != 0:
        print(f"the unmutated copy fails, so mutants prove nothing: {failed or tail}")
        return 2
    print(f"baseline: the unmutated copy passes {'the fast suite' if args.full else 'every named test'}", flush=True)
    survived = []
    for name, (file, _, _, test) in MUTATIONS.items():
        with tempfile.TemporaryDirectory(prefix="mmops-mutant-") as tmp:
            code, failed, tail = run_tests(mutant(Path(tmp), name), [] if args.full else [test])
        caught = code == 1 and bool(failed)
        print(f"{'killed  ' if caught else 'SURVIVED'} {name} ({file}): "
              f"{'by ' + ', '.join(failed[:3]) if caught else tail}", flush=True)
        if not caught:
            survived.append(name)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
