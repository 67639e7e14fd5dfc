"""`mmops`: the command line. It parses, loads params, calls a stage or helper, prints a summary."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from mmops.config import Layout, load_params

# Set by flows/retraining.py for the stages DVC runs: registration records (and retries within) that flow run.
FLOW_RUN_ENV = "MMOPS_FLOW_RUN_ID"
EXIT_REFUSED = 4  # `mmops promote` refused the challenger (1: an error, 2: bad arguments, 3: drift)


def _stage(args: argparse.Namespace) -> int:
    import logging

    from mmops import stages

    # progress of long stages (epochs, encoding) on stderr: dvc repro shows it, flows/retraining.py logs it
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("mmops").setLevel(logging.INFO)
    params = load_params(args.params)
    layout = Layout(Path(args.artifacts))
    kwargs: dict[str, Any] = {"device": args.device} if args.name in ("featurize", "train") and args.device else {}
    if args.resume:
        if args.name != "train":
            raise SystemExit("--resume applies to `mmops stage train` only")
        kwargs["resume"] = True
    if args.name == "register" and os.environ.get(FLOW_RUN_ENV):
        kwargs["flow_run_id"] = os.environ[FLOW_RUN_ENV]
    result = getattr(stages, args.name)(params, layout, **kwargs)
    print(f"[{args.name}] {json.dumps(result, default=str)}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from mmops.data.sample import DEFAULT_VENDOR, build_vendor_sample, ensure_sample, vendor_of

    if args.dataset == "tuxpaint":
        from mmops.data.tuxpaint import MIN_PER_CLASS, ensure_tuxpaint

        print(ensure_tuxpaint(Path(args.out or "datasets/tuxpaint"), Path(args.cache or ".cache/apt"),
                              deb=Path(args.deb) if args.deb else None,
                              min_per_class=MIN_PER_CLASS if args.min_per_class is None else args.min_per_class))
        return 0
    args.cache = args.cache or ".cache/npm"

    if args.vendor != DEFAULT_VENDOR or args.out:
        out = Path(args.out or vendor_of(args.vendor).folder)  # shift/twitter.dvc versions the Twitter set
        print(build_vendor_sample(args.vendor, out, Path(args.cache), data_dir=Path(args.data)))
        return 0
    print(ensure_sample(Path(args.data), Path(args.cache), dvc_file=Path(args.dvc_file)))
    return 0


def _drift(args: argparse.Namespace) -> int:
    from mmops.data.drift import check_manifest, render_markdown
    from mmops.data.profile import load_profile

    params = load_params(args.params)
    reference = Path(args.reference)
    report = check_manifest(params, Path(args.manifest), load_profile(reference), params.drift,
                            root=Path(args.root) if args.root else None, device=args.device)
    print(render_markdown(report, f"Drift of {args.manifest} against {reference}"))
    if args.out:
        from mmops import artifacts

        artifacts.write_json(Path(args.out), report.to_dict())
    return 3 if report.drifted else 0


def _interval(scores: dict[str, float], name: str) -> str:
    """"[low, high]" of a score's interval, or "" for metrics from before intervals."""
    if f"{name}_low" not in scores:
        return ""
    return f"[{scores[f'{name}_low']:.3f}, {scores[f'{name}_high']:.3f}]"


def _print_shift(sets: dict[str, Any]) -> None:
    """The shift stage's scores: per set, on the test split's ids (all rows, when none is one)."""
    for name, found in sets.items():
        if "skipped" in found:
            print(f"\nShift set {name}: skipped ({found['skipped']})")
            continue
        subset, which = ("test_ids", "rows whose ids are in the test split") if "test_ids" in found else ("all", "all rows")
        scored = found[subset]
        print(f"\nShift set {name} ({scored['samples']} {which}; {found['rejected']} of {found['rows']} rows rejected):")
        print(f"  {'model':<8} {'accuracy':>9} {'macro-F1':>9} {'ECE':>6}")
        for model, scores in sorted(scored["models"].items(), key=lambda item: item[0] != "fused"):
            print(f"  {model:<8} {scores['accuracy']:>9.3f} {scores['macro_f1']:>9.3f} {scores['ece']:>6.3f}")
        if "regret" in scored:
            print(f"  fusion regret {scored['regret']:+.3f} (best single modality, {scored['regret_modality']}, "
                  "minus fused; above 0, fusing lost to one of its inputs)")


def _summary(args: argparse.Namespace) -> int:
    from mmops.registry.lineage import redact_uri

    layout = Layout(Path(args.artifacts))
    metrics = json.loads(layout.metrics.read_text())
    print(f"\nTest split ({metrics['test_samples']} samples):")
    # fused first, then each subset of the modalities (pairs of three: `image-text`), then each alone
    ordered = sorted(metrics["test"].items(), key=lambda item: (item[0] != "fused", -item[0].count("-"), item[0]))
    width = max(8, *(len(name) for name in metrics["test"]))
    print(f"  {'model':<{width}} {'accuracy':>9} {'95% interval':>15} {'macro-F1':>9} {'95% interval':>15} {'ECE':>6} "
          f"{'before':>6}")

    def number(scores: dict[str, float], key: str) -> str:
        return format(scores[key], ".3f") if key in scores else ""

    for name, scores in ordered:
        print(f"  {name:<{width}} {scores['accuracy']:>9.3f} {_interval(scores, 'accuracy'):>15} "
              f"{scores['macro_f1']:>9.3f} {_interval(scores, 'macro_f1'):>15} "
              f"{number(scores, 'ece'):>6} {number(scores, 'ece_uncalibrated'):>6}".rstrip())
    print("  (intervals: the test split's groups resampled, as the gate does; ECE: expected calibration error,\n"
          "   with the temperatures fitted on validation, and before them)")
    for pair, found in metrics.get("retrieval", {}).items():
        print(f"  retrieval {pair}: recall@1 {found['recall@1']:.3f}, recall@5 {found['recall@5']:.3f} "
              f"({found['samples']} pairs; chance {1 / found['samples']:.3f} and {5 / found['samples']:.3f})")
    if layout.shift_metrics.exists():
        _print_shift(json.loads(layout.shift_metrics.read_text())["sets"])
    if layout.registered.exists():
        reg = json.loads(layout.registered.read_text())
        if reg.get("registered", True):
            print(f"\nRegistered: {reg['name']} version {reg['version']} (alias '{reg['alias']}'), run {reg['run_id']}")
            print(f"  tracking store: {redact_uri(reg['tracking_uri'])}")  # a file from before redaction too
            if "model_card" in reg:
                print(f"  model card:     {reg['model_card']}  (`mmops card {reg['version']}` for a local copy)")
            print("  next:           mmops promote   (the gate: champion only if it earns it)")
        else:
            print(f"\nNot registered: {reg['reason']}")
    print("\nWhere to look:")
    print("  metrics:   dvc metrics show    (files under artifacts/)")
    print("  plots:     dvc plots show      (writes dvc_plots/index.html; offline after make run, or with --html-template artifacts/plots/template.html)")
    print("  MLflow UI: .venv/bin/mlflow ui  (then open http://127.0.0.1:5000)")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from mmops import stages

    result = stages.promote(load_params(args.params))
    if result["action"] == "unchanged":
        print(f"v{result['challenger']} is already the champion: nothing to decide")
        return 0
    print(f"challenger v{result['challenger']} vs champion "
          f"{'v' + result['champion_before'] if result['champion_before'] else '(none)'}:")
    for line in result["checks"]:
        print(f"  {line}")
    verdict = "PROMOTED" if result["action"] == "promote" else "REFUSED"
    print(f"{verdict}: champion is {'v' + result['champion_after'] if result['champion_after'] else '(none)'}"
          f" (decision run {result['run_id']})")
    # a refusal is a verdict, not an error, but cron, CI and `&&` must see it
    return 0 if result["action"] == "promote" else EXIT_REFUSED


def _rollback(args: argparse.Namespace) -> int:
    from mmops import stages

    result = stages.rollback(load_params(args.params))
    print(f"rolled back: champion v{result['champion_before']} -> v{result['champion_after']}"
          f" (run {result['run_id']})")
    return 0


def _history(args: argparse.Namespace) -> int:
    from mmops.registry.promotion import history

    rows = history(load_params(args.params))
    if not rows:
        print("no decisions recorded yet")
    for row in rows:
        print(f"{row['time']}  {row['action']:<8} v{row['version']:<4} champion "
              f"{row['champion_before']} -> {row['champion_after']}  {row['reason']}")
    return 0


def _version(client: Any, name: str, ref: str) -> str:
    """A version number, or the version an alias points to."""
    return ref if ref.isdigit() else str(client.get_model_version_by_alias(name, ref).version)


def _lineage(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    from mmops.registry.lineage import rebuild_commands, version_lineage

    client, name = MlflowClient(), load_params(args.params).register.model_name
    info = version_lineage(client, name, _version(client, name, args.version))
    when = datetime.fromtimestamp(info["registered"] / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    made_by = f"Prefect flow run {info['flow_run']}" if info["flow_run"] != "none" else f"DVC stage {info['stage']}"
    validation = info["validation"]
    print(f"{name} v{info['version']}  registered {when}  run {info['run_id']}"
          + (f"  aliases: {', '.join(info['aliases'])}" if info["aliases"] else ""))
    print(f"  commit       {info['commit']}")
    print(f"  data         md5 {info['data_md5']} (workspace matched data.dvc: {info['data_matched_dvc_file']})")
    print(f"  params hash  {info['params_hash']} (every value is logged as the run's params)")
    print(f"  produced by  {made_by}")
    print(f"  validation   {'passed' if validation['success'] else 'FAILED' if validation['success'] is False else 'not logged'}"
          f", {validation['failures']} failure(s); cleaning kept {info['cleaning'].get('kept', '?')} of "
          f"{info['cleaning'].get('rows', '?')} rows")
    print("Rebuild it (in a clone of this repository):")
    for command in rebuild_commands(info):
        print(f"  {command}")
    return 0


def _card(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    from mmops.registry.card import publish

    client, name = MlflowClient(), load_params(args.params).register.model_name
    version = _version(client, name, args.version)
    local = Path(args.out or f"artifacts/cards/{name}-v{version}.html")
    uri = publish(client, name, version, local_copy=local)
    print(f"model card of {name} v{version}: {local} (open it in a browser); logged as {uri}")
    return 0


def _plots_page(args: argparse.Namespace) -> int:
    from mmops.plots_page import build_template

    out = build_template(Path(args.out), Path(args.cache))
    print(f"{out}: vega, vega-lite and vega-embed inlined; offline plots: dvc plots show --html-template {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    from mmops.stages import STAGES

    stage = sub.add_parser("stage", help="run one pipeline stage (what dvc.yaml calls)")
    stage.add_argument("name", choices=STAGES)
    stage.add_argument("--params", default="params.yaml")
    stage.add_argument("--artifacts", default="artifacts")
    stage.add_argument("--device", default=None, help="override the automatic choice (cuda/cpu)")
    stage.add_argument("--resume", action="store_true",
                       help="train: continue a killed run from its last epoch's checkpoint (artifacts/train/checkpoint.pt)")
    stage.set_defaults(func=_stage)

    sample = sub.add_parser("sample", help="materialise the sample dataset into data/ as data.dvc records it; "
                            "with --vendor twitter, the same emoji in Twitter's art into shift/twitter (a shift set)")
    sample.add_argument("--data", default="data")
    sample.add_argument("--dataset", choices=("emoji", "tuxpaint"), default="emoji",
                        help="emoji (two modalities, the default) or tuxpaint: Tux Paint's stamps, picture + English "
                        "caption + French spoken description, from Debian's package (into datasets/tuxpaint)")
    sample.add_argument("--cache", default=None, help="where fetched packages are kept (.cache/npm, .cache/apt)")
    sample.add_argument("--deb", default=None, help="tuxpaint: the package's .deb, supplied by hand (checked)")
    sample.add_argument("--min-per-class", type=int, default=None,
                        help="tuxpaint: drop the categories with fewer stamps than this (15)")
    sample.add_argument("--dvc-file", default="data.dvc")
    sample.add_argument("--vendor", default="google", help="whose emoji art: google (data/), twitter "
                        "(shift/twitter, a shift set) or openmoji (styles/openmoji, drawings to train on)")
    sample.add_argument("--out", default=None, help="a folder outside data/ for another vendor's sample "
                        "(default shift/twitter or styles/openmoji, checked against the .dvc file beside it)")
    sample.set_defaults(func=_sample)

    drift = sub.add_parser("drift", help="compare a manifest (another data version) with the last training's "
                           "reference profile; exit 3 when it drifted")
    drift.add_argument("manifest", help="a manifest CSV with the columns params.yaml names")
    drift.add_argument("--root", default=None, help="where its media paths start (default: the manifest's folder)")
    drift.add_argument("--reference", default="artifacts/train/reference.json")
    drift.add_argument("--out", default=None, help="also write the report as JSON here")
    drift.add_argument("--params", default="params.yaml")
    drift.add_argument("--device", default=None, help="override the automatic choice (cuda/cpu)")
    drift.set_defaults(func=_drift)

    for name, func, text in (
        ("promote", _promote, "the gate: promote the challenger to champion if it earns it (recorded); "
                              f"exit 0 promoted (or already champion), {EXIT_REFUSED} refused, 1 error"),
        ("rollback", _rollback, "swap champion back to the previous version (recorded)"),
        ("history", _history, "every promotion decision and rollback, oldest first"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("--params", default="params.yaml")
        command.set_defaults(func=func)

    lineage = sub.add_parser("lineage", help="what produced a registered version, and the commands that rebuild it")
    lineage.add_argument("version", help="a version number or an alias (champion, challenger, ...)")
    lineage.add_argument("--params", default="params.yaml")
    lineage.set_defaults(func=_lineage)

    card = sub.add_parser("card", help="(re)build a version's model card: logged to its run, and a local copy")
    card.add_argument("version", help="a version number or an alias (champion, challenger, ...)")
    card.add_argument("--out", default=None, help="where to write the local copy "
                      "(default artifacts/cards/<model>-v<version>.html)")
    card.add_argument("--params", default="params.yaml")
    card.set_defaults(func=_card)

    plots_page = sub.add_parser("plots-page", help="build the page template that lets `dvc plots show` render "
                                "offline (vega, vega-lite, vega-embed inlined from hash-pinned npm tarballs)")
    plots_page.add_argument("--out", default="artifacts/plots/template.html")
    plots_page.add_argument("--cache", default=".cache/npm", help="where the verified npm tarballs are kept")
    plots_page.set_defaults(func=_plots_page)

    summary = sub.add_parser("summary", help="print the scores, the registered version and where to look")
    summary.add_argument("--artifacts", default="artifacts")
    summary.set_defaults(func=_summary)
    return parser


def _is_expected(err: Exception) -> bool:
    """Bad input, broken preconditions, or the tracking server refusing: a message, no traceback.
    (MLflow is imported only by the commands that use it, so it is looked up, not imported.)"""
    mlflow_errors = sys.modules.get("mlflow.exceptions")
    return isinstance(err, (ValueError, RuntimeError, OSError, yaml.YAMLError)) or (
        mlflow_errors is not None and isinstance(err, mlflow_errors.MlflowException))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as err:
        if not _is_expected(err):
            raise
        # Bad input and broken preconditions: the message names the file/row; no traceback.
        print(f"mmops: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
