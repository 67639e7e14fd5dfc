"""Frozen against fine-tuned, side by side in one run, in-domain and under a change of art style.
Each setting trains with the train stage's own code (in a scratch copy of the artifacts it
reads), is scored by the evaluate stage on the sample's test split, and then served (the
pyfunc model, with its own encoder) the Twitter renderings of the same test ids
(`shift/twitter`): fused, image only and text only (a request with just that column).

    .venv/bin/python bench/finetune.py                                   # after `make run`
    .venv/bin/python bench/finetune.py --settings frozen finetune:5:0.5 finetune:5:0
    .venv/bin/python bench/finetune.py --settings finetune:5:0.5 finetune:5:0.5:openmoji
    .venv/bin/python bench/finetune.py --settings finetune:5:0.5:openmoji finetune:5:0.5:openmoji:twitter

A setting is `frozen`, or `finetune:<epochs>:<image augmentation strength>` (0: none), either
optionally followed by `:<drawing sets>` (comma-separated names of `--drawings`; `augment.drawings`): those
artists' drawings of the training emoji join fine-tuning, so the augment and featurize stages
run again in the scratch copy (minutes). The Twitter set is not among them unless `--drawings`
names it (`twitter=shift/twitter/metadata.csv`: then its style is no longer unseen). A fine-tuning
setting may end in `:<selection sets>` (names of `shift.sets`; `train.select_on`): those sets'
drawings of the **val** ids help choose the epoch (`finetune:5:0.5::twitter` without drawings).
The test ids, which the table reports on, are never among them.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from mmops import artifacts, stages
from mmops.config import ID, LABEL, Layout, load_params
from mmops.modalities import build_modalities, requests_for
from mmops.serving.pyfunc import MultimodalClassifier


def configure(params, setting: str, sets: dict[str, str]):
    mode, *rest = setting.split(":")
    if mode == "frozen":
        drawings = {name: sets[name] for name in rest[0].split(",")} if rest else {}
        return dataclasses.replace(params, train=dataclasses.replace(params.train, mode="frozen"),
                                   augment=dataclasses.replace(params.augment, drawings=drawings))
    epochs, strength, drawn, select = (*rest, "", "")[:4]
    drawings = {name: sets[name] for name in drawn.split(",")} if drawn else {}
    augment = dataclasses.replace(params.augment, enabled=float(strength) > 0, drawings=drawings,
                                  strength={**params.augment.strength, "image": float(strength)})
    return dataclasses.replace(params, augment=augment, train=dataclasses.replace(
        params.train, mode="finetune", finetune_epochs=int(epochs), select_on=tuple(filter(None, select.split(",")))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--shift", default="shift/twitter")
    parser.add_argument("--settings", nargs="+", default=["frozen", "finetune:5:0.5", "finetune:5:0"])
    parser.add_argument("--device", default=None, help="override the automatic choice (cuda/cpu)")
    parser.add_argument("--drawings", nargs="*", default=["openmoji=styles/openmoji/metadata.csv"],
                        help="drawing sets a setting may name, NAME=MANIFEST")
    parser.add_argument("--seed", type=int, default=None, help="train.seed and augment.seed (default: params.yaml's)")
    args = parser.parse_args()
    sets = dict(item.split("=", 1) for item in args.drawings)
    base, source = load_params(Path(args.params)), Layout(Path(args.artifacts))
    if args.seed is not None:
        base = dataclasses.replace(base, train=dataclasses.replace(base.train, seed=args.seed),
                                   augment=dataclasses.replace(base.augment, seed=args.seed))
    modalities = build_modalities(base.modalities)
    frame = artifacts.read_csv(source.split_manifest)
    test = frame[frame["split"] == "test"]
    shift_root = Path(args.shift)
    shift = artifacts.read_csv(shift_root / "metadata.csv").set_index(ID)
    rows = shift.loc[[s for s in test[ID] if s in shift.index]].reset_index()
    print(f"test split: {len(test)} rows; {args.shift}: {len(rows)} of them", flush=True)
    table = []
    for setting in args.settings:
        params = configure(base, setting, sets)
        with tempfile.TemporaryDirectory() as scratch:
            layout = Layout(Path(scratch) / "artifacts")
            for path in (source.clean_manifest, source.split_manifest, source.features):
                target = layout.root / path.relative_to(source.root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target)
            shutil.copytree(source.augment, layout.augment)
            if params.augment.drawings:  # their views, and their features
                stages.augment(params, layout)
                stages.featurize(params, layout, device=args.device)
            start = time.perf_counter()
            trained = stages.train(params, layout, device=args.device)
            seconds = time.perf_counter() - start
            if params.train.mode == "finetune":  # what each epoch learned, and which one was kept
                history = pd.read_csv(layout.history)
                for row in history.to_dict("records"):
                    chosen = "".join(f"; {n}'s val ids: loss {row[f'select_{n}_loss']:.3f}, acc fused "
                                     f"{row[f'select_{n}_acc']:.3f} / image {row[f'select_{n}_acc_image']:.3f}"
                                     for n in params.train.select_on)
                    print(f"    epoch {row['epoch']}: train loss {row['train_loss']:.3f}, val loss {row['val_loss']:.3f}, "
                          f"val acc fused {row['val_acc']:.3f} / image {row['val_acc_image']:.3f}{chosen}", flush=True)
                print(f"    kept epoch {trained['best_epoch']}", flush=True)
            sample = stages.evaluate(params, layout)["test"]
            served = MultimodalClassifier()
            served.load_context(SimpleNamespace(artifacts={"checkpoint": str(layout.model)},
                                                model_config={"max_records": len(rows)}))
            requests = requests_for(rows, modalities, shift_root)
            twitter = {}
            for name, columns in (("fused", list(requests)), *((m.name, [m.name]) for m in modalities)):
                answers = served.predict(None, requests[columns])["label"]
                twitter[name] = (accuracy_score(rows[LABEL], answers),
                                 f1_score(rows[LABEL], answers, average="macro", labels=list(params.data.labels),
                                          zero_division=0))
        table.append((setting, trained, seconds, sample, twitter))
        print(f"  {setting}: trained in {seconds:.0f} s on {trained['device']}", flush=True)

    print("\n| setting | train s | sample fused acc / F1 | sample image | sample text | Twitter fused | "
          "Twitter image | Twitter text |")
    print("|---|---|---|---|---|---|---|---|")
    for setting, trained, seconds, sample, twitter in table:
        s = {k: f"{v['accuracy']:.3f} / {v['macro_f1']:.3f}" for k, v in sample.items()}
        t = {k: f"{a:.3f} / {f:.3f}" for k, (a, f) in twitter.items()}
        print(f"| {setting} | {seconds:.0f} | {s['fused']} | {s['image']} | {s['text']} | {t['fused']} | "
              f"{t['image']} | {t['text']} |")


if __name__ == "__main__":
    main()
