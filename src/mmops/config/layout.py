"""Where each stage writes: the artifact layout, which dvc.yaml declares too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Where each stage writes, under `artifacts/<stage>/`. dvc.yaml declares the same paths
    (a test checks they agree)."""

    root: Path = Path("artifacts")

    def all_paths(self) -> dict[str, Path]:
        """Every artifact path, by name."""
        return {name: getattr(self, name) for name, value in vars(Layout).items() if isinstance(value, property)}

    @property
    def validation(self) -> Path:
        return self.root / "validate" / "validation.json"

    @property
    def validation_report(self) -> Path:
        return self.root / "validate" / "report.html"

    @property
    def clean_manifest(self) -> Path:
        return self.root / "clean" / "manifest.csv"

    @property
    def rejects(self) -> Path:
        return self.root / "clean" / "rejects.csv"

    @property
    def clean_metrics(self) -> Path:
        return self.root / "clean" / "metrics.json"

    @property
    def clean_expectations(self) -> Path:
        return self.root / "clean" / "expectations.json"

    @property
    def split_manifest(self) -> Path:
        return self.root / "split" / "manifest.csv"

    @property
    def split_groups(self) -> Path:
        return self.root / "split" / "groups.csv"

    @property
    def split_metrics(self) -> Path:
        return self.root / "split" / "metrics.json"

    @property
    def augment(self) -> Path:
        """The augment stage's folder: `manifest.csv` (the views) and `views/` (their media files,
        which the manifest's paths are relative to), written as one."""
        return self.root / "augment"

    @property
    def shift_metrics(self) -> Path:
        return self.root / "shift" / "metrics.json"

    @property
    def shift_scores(self) -> Path:
        return self.root / "shift" / "scores.csv"

    @property
    def features(self) -> Path:
        return self.root / "featurize" / "features.pt"

    @property
    def feature_expectations(self) -> Path:
        return self.root / "featurize" / "expectations.json"

    @property
    def drift(self) -> Path:
        return self.root / "validate" / "drift.json"

    @property
    def feature_drift(self) -> Path:
        return self.root / "featurize" / "drift.json"

    @property
    def reference(self) -> Path:
        return self.root / "train" / "reference.json"

    @property
    def model(self) -> Path:
        return self.root / "train" / "model.pt"

    @property
    def history(self) -> Path:
        return self.root / "train" / "history.csv"

    @property
    def train_checkpoint(self) -> Path:
        return self.root / "train" / "checkpoint.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "evaluate" / "metrics.json"

    @property
    def confusion(self) -> Path:
        return self.root / "evaluate" / "confusion.csv"

    @property
    def predictions(self) -> Path:
        return self.root / "evaluate" / "predictions.csv"

    @property
    def calibration(self) -> Path:
        return self.root / "evaluate" / "calibration.csv"

    @property
    def per_class(self) -> Path:
        return self.root / "evaluate" / "per_class.csv"

    @property
    def register_inputs(self) -> Path:
        return self.root / "register" / "inputs.json"

    @property
    def data_report(self) -> Path:
        return self.root / "register" / "data_report.html"

    @property
    def registered(self) -> Path:
        return self.root / "register" / "model_version.json"
