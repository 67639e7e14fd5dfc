"""Every fusion method, with and without modality dropout and alignment, trained and scored on
the sample in one run, beside what a user would pick instead: scikit-learn logistic regression
on the same cached features and split (image, text, their concatenation, and the late average
of the image and text models with its weight chosen on validation).

For each: the fused prediction's validation loss (what picks the default; with several
`--seeds`, its mean and spread over them, since one seed's difference can be noise) and
accuracy, then on the test split fused / image-only / text-only accuracy and macro-F1 with 95%
intervals (the split's groups resampled, as the gate does; the first seed's model), the fused
prediction's ECE, image->text retrieval recall@1 when aligned, and training seconds.

    .venv/bin/python bench/fusion.py                      # after `make run` (about 2 minutes)
    .venv/bin/python bench/fusion.py --seeds 0 1 2 3      # the default is picked this way (8 minutes)
    .venv/bin/python bench/fusion.py --methods late attention --dropouts 0 --weights 0
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch.nn import functional as F

from mmops.config import Layout, load_params
from mmops.data.split_features import features_by_split
from mmops.evaluation.bootstrap import Resampler
from mmops.evaluation.metrics import score_models
from mmops.evaluation.retrieval import retrieval_scores
from mmops.models.fusion import FUSED, FUSIONS
from mmops.models.predict import predict
from mmops.training.train import fit

CPU = torch.device("cpu")


def logistic_baselines(data: dict, classes: int, seed: int) -> dict[str, dict]:
    """Logistic regression on standardised image, text and concatenated features, its
    regularisation C chosen on validation log-loss, and the late average of the image and text
    models (on the sample every row has both; a modality's absent rows hold zero features)."""
    def fitted(split_features: list[str]):
        x = {s: np.concatenate([data[s]["features"][m].numpy() for m in split_features], 1) for s in data}
        scaler = StandardScaler().fit(x["train"])
        best, best_loss = None, float("inf")
        for c in (0.001, 0.01, 0.1, 1.0):
            model = LogisticRegression(C=c, max_iter=3000, random_state=seed)
            model.fit(scaler.transform(x["train"]), data["train"]["target"].numpy())
            val = model.predict_log_proba(scaler.transform(x["val"]))
            loss = float(F.nll_loss(torch.as_tensor(val), data["val"]["target"]))
            if loss < best_loss:
                best, best_loss = model, loss
        return {s: best.predict_log_proba(scaler.transform(x[s])) for s in ("val", "test")}

    image, text, both = fitted(["image"]), fitted(["text"]), fitted(["image", "text"])
    y_val = torch.as_tensor(data["val"]["target"])
    best_w, best_loss = 0.5, float("inf")
    for w in np.linspace(0, 1, 21):  # the late average's image weight, by validation log-loss
        mixed = np.logaddexp(np.log(max(w, 1e-12)) + image["val"], np.log(max(1 - w, 1e-12)) + text["val"])
        loss = float(F.nll_loss(torch.as_tensor(mixed), y_val))
        if loss < best_loss - 1e-9:
            best_w, best_loss = w, loss
    late = {s: np.logaddexp(np.log(max(best_w, 1e-12)) + image[s], np.log(max(1 - best_w, 1e-12)) + text[s])
            for s in ("val", "test")}
    return {"logistic image": {"fused": image}, "logistic text": {"fused": text},
            "logistic concat": {"fused": both, "image": None, "text": None},
            f"logistic late avg (w_image={best_w:.2f})": {"fused": late, "image": image, "text": text}}


def fmt(scores: dict[str, float] | None, name: str) -> str:
    if scores is None:
        return ""
    return f"{scores[name]:.3f} [{scores[name + '_low']:.3f}, {scores[name + '_high']:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--methods", nargs="*", default=sorted(FUSIONS), help="none: the baselines alone")
    parser.add_argument("--dropouts", nargs="+", type=float, default=[0.0, 0.3], help="train.modality_dropout values")
    parser.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.1], help="train.contrastive_weight values")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="train.seed values (validation loss: mean)")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    params, layout = load_params(Path(args.params)), Layout(Path(args.artifacts))
    _, data, frame = features_by_split(params, layout)
    classes = len(params.data.labels)
    tr, va, te = data["train"], data["val"], data["test"]
    y = te["target"].numpy()
    groups = frame.loc[frame["split"] == "test", "group"].to_numpy()
    resampler = Resampler.of(groups, len(y), resamples=args.resamples, seed=0)
    present = {m: p.numpy() for m, p in te["present"].items()}

    rows = []
    for method in args.methods:
        for dropout in args.dropouts:
            for weight in args.weights:
                val_losses = []
                for seed in reversed(args.seeds):  # the first seed last: its model is the one scored
                    train = dataclasses.replace(params.train, fusion=method, modality_dropout=dropout,
                                                contrastive_weight=weight, seed=seed)
                    start = time.perf_counter()
                    result = fit(tr["features"], tr["target"], va["features"], va["target"], classes, train, CPU,
                                 tr["present"], va["present"])
                    seconds = time.perf_counter() - start
                    val_lp = predict(result.model, va["features"], CPU, va["present"]).log_probs[FUSED]
                    val_losses.append(float(F.nll_loss(val_lp, va["target"])))
                out = predict(result.model, te["features"], CPU, te["present"])
                retrieval = ""
                if result.model.alignment is not None:
                    with torch.no_grad():
                        aligned = result.model.alignment(out.embeddings)
                    found = retrieval_scores(aligned, te["present"])["image->text"]
                    retrieval = f"{found['recall@1']:.3f}"
                rows.append({
                    "config": f"{method}" + (f" +drop {dropout:g}" if dropout else "") + (f" +align {weight:g}" if weight else ""),
                    "val_acc": float((val_lp.argmax(1) == va["target"]).float().mean()),
                    "val_loss": float(np.mean(val_losses)),
                    "val_sd": float(np.std(val_losses, ddof=1)) if len(val_losses) > 1 else 0.0,
                    "scores": score_models({k: v.numpy() for k, v in out.log_probs.items()}, y, present, classes,
                                           resampler),
                    "retrieval": retrieval, "seconds": seconds,
                })
                print(f"  trained {rows[-1]['config']} in {seconds:.1f} s", flush=True)
    start = time.perf_counter()
    for name, parts in logistic_baselines(data, classes, params.train.seed).items():
        val = parts["fused"]["val"]
        rows.append({
            "config": name,
            "val_acc": float((val.argmax(1) == va["target"].numpy()).mean()),
            "val_loss": float(F.nll_loss(torch.as_tensor(val), va["target"])), "val_sd": 0.0,
            "scores": score_models({k: v["test"] for k, v in parts.items() if v is not None}, y, present, classes,
                                   resampler),
            "retrieval": "", "seconds": float("nan"),
        })
    print(f"  logistic baselines in {time.perf_counter() - start:.1f} s")

    print(f"\nTest split: {len(y)} rows in {len(set(groups))} groups; intervals: {args.resamples} group resamples, "
          f"95%; validation loss over seeds {args.seeds} (mean ± sd)")
    print("| config | val acc | val loss | fused acc | fused macro-F1 | image acc | image macro-F1 | text acc "
          "| text macro-F1 | fused ECE | R@1 i->t | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        s = row["scores"]
        print(f"| {row['config']} | {row['val_acc']:.3f} | {row['val_loss']:.3f} ± {row['val_sd']:.3f} | "
              f"{fmt(s[FUSED], 'accuracy')} | "
              f"{fmt(s[FUSED], 'macro_f1')} | {fmt(s.get('image'), 'accuracy')} | {fmt(s.get('image'), 'macro_f1')} | "
              f"{fmt(s.get('text'), 'accuracy')} | {fmt(s.get('text'), 'macro_f1')} | {s[FUSED]['ece']:.3f} | "
              f"{row['retrieval']} | {row['seconds']:.1f} |")
    trained = [r for r in rows if not r["config"].startswith("logistic")]
    if trained:
        winner = min(trained, key=lambda r: r["val_loss"])
        print(f"\nValidation winner (lowest mean fused val loss, what early stopping also uses): {winner['config']}")
        n = len(args.seeds)

        def tied(row: dict) -> bool:  # within two standard errors of the difference of the means
            return row["val_loss"] - winner["val_loss"] < 2 * np.sqrt((winner["val_sd"] ** 2 + row["val_sd"] ** 2) / n)

        close = [r["config"] for r in trained if r is not winner and n > 1 and tied(r)]
        if close:
            print(f"  within two standard errors of it ({n} seeds cannot tell them apart): {', '.join(close)}")


if __name__ == "__main__":
    main()
