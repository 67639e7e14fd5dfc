"""One frozen dataclass per `params.yaml` section, and `Params`, all of them together."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRECISIONS = ("auto", "float32", "bfloat16")
# After reading, every stage uses canonical column names: `sample_id`, `label` and each
# modality's name. `line` is the manifest's line number (the header is line 1), so messages
# can point at the row a person would open. Here, at the bottom, so every layer can name them.
ID, LABEL, LINE = "sample_id", "label", "line"


@dataclass(frozen=True)
class Columns:
    """Names of the manifest's id and label columns (each modality names its own column)."""

    id: str = "sample_id"
    label: str = "label"


@dataclass(frozen=True)
class ModalityParams:
    """One entry of `modalities:` in params.yaml: which modality (a name registered in
    `mmops.modalities`), the manifest column that holds it, the frozen encoder that turns it
    into features, whether every row must have it, and that modality's own options (typed and
    checked by the modality)."""

    name: str
    column: str
    encoder: str
    required: bool = True
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataParams:
    root: Path = Path("data")
    manifest: Path = Path("data/metadata.csv")
    columns: Columns = field(default_factory=Columns)
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class CleanParams:
    # A few bad rows are rejected and recorded; more than this share of the manifest means the
    # export itself is broken, and clean stops rather than train on what is left.
    max_reject_fraction: float = 0.05
    # The cleaned manifest's suite: every configured class keeps at least this many rows.
    min_per_class: int = 5

    def __post_init__(self) -> None:
        if not 0 <= self.max_reject_fraction <= 1:
            raise ValueError("params.yaml: 'clean.max_reject_fraction' must be between 0 and 1")
        if self.min_per_class < 1:
            raise ValueError("params.yaml: 'clean.min_per_class' must be at least 1")


@dataclass(frozen=True)
class SplitParams:
    salt: str = "mmops-v1"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # Perceptual hashes (256 bits) at most this far apart are one group: a recolour or a
    # re-encode of the same picture. -1: only identical files are grouped.
    near_duplicate_distance: int = 15
    # Families: rows whose `family_column` names the same thing once `family_words` are removed
    # (from the name, up to `family_separator`) are one group. An empty column turns it off.
    family_column: str = "text"
    family_separator: str = ";"
    family_words: tuple[str, ...] = ("man", "men", "woman", "women", "person", "people", "boy", "girl",
                                     "male", "female", "adult", "child", "older", "old")


@dataclass(frozen=True)
class AugmentParams:
    """Extra views of each training sample (the augment stage); val and test are never augmented."""

    enabled: bool = False
    views: int = 2  # per training sample
    seed: int = 0
    # per modality, 0 (its value copied unchanged) to 1: scales each augmentation's chance and size
    strength: dict[str, float] = field(default_factory=dict)
    # name -> manifest (data contract, media relative to its folder): other drawings of the same
    # samples (same ids), each a view of its training sample, whether or not `enabled`
    drawings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.views < 1:
            raise ValueError("params.yaml: 'augment.views' must be >= 1")
        for name in self.drawings:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", str(name)):
                raise ValueError(f"params.yaml: 'augment.drawings' names a set {name!r}: use letters, digits, _ and -")
        for name, value in self.strength.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"params.yaml: 'augment.strength.{name}' must be a number from 0 to 1, got {value!r}")


@dataclass(frozen=True)
class FeaturizeParams:
    batch_size: int = 64
    # auto: bf16 autocast where the hardware is made for it (CUDA), float32 elsewhere.
    # Recorded with the features; serving encodes the same way.
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"params.yaml: 'featurize.precision' must be one of {', '.join(PRECISIONS)}")


@dataclass(frozen=True)
class TrainParams:
    fusion: str = "late"  # a method registered in mmops.models.fusion
    seed: int = 0
    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    # Each fusion method's own options, by method (`train.fusions.concat.hidden_dim`); the model
    # checks them when it is built (mmops.models.fusion.fusion_options) and the checkpoint keeps them.
    fusions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per training sample and modality, the chance it is hidden for that step (never a sample's
    # last one), so the model learns to answer from any subset of its modalities.
    modality_dropout: float = 0.0
    optimizer: str = "adamw"  # adam (L2 penalty in the gradient) or adamw (decoupled weight decay)
    label_smoothing: float = 0.0  # of the cross-entropy: the target keeps 1 - this
    # CLIP-style alignment of the modalities' embeddings (mmops.models.fusion.align): its loss's
    # weight beside the label loss (0: none) and the shared space's width
    contrastive_weight: float = 0.0
    contrastive_dim: int = 128
    # frozen: heads on the cached features. finetune: each modality whose encoder can be trained
    # (the image's) is trained end to end with the head, from its pretrained weights, on
    # augmented inputs (augment.strength, on the fly), for `finetune_epochs`, at `encoder_lr`.
    mode: str = "frozen"
    encoder_lr: float = 1e-4
    finetune_epochs: int = 5
    workers: int = 0  # DataLoader worker processes that load and augment inputs (finetune)
    # Sets of `shift.sets` whose rows with a val-split id join the validation split when
    # fine-tuning chooses its epoch (the mean of each one's fused loss and the val split's): the
    # same emoji drawn another way, so the encoder kept is the one that reads both styles. Only
    # val ids: a set's test ids stay for reporting.
    select_on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or not 0 <= self.modality_dropout < 1:
            raise ValueError("params.yaml: train needs epochs >= 1, batch_size >= 1, lr > 0, "
                             "0 <= modality_dropout < 1")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"params.yaml: train.optimizer must be adam or adamw, got {self.optimizer!r}")
        if not 0 <= self.label_smoothing < 1 or self.contrastive_weight < 0 or self.contrastive_dim < 1:
            raise ValueError("params.yaml: train needs 0 <= label_smoothing < 1, contrastive_weight >= 0, "
                             "contrastive_dim >= 1")
        if self.mode not in ("frozen", "finetune"):
            raise ValueError(f"params.yaml: train.mode must be frozen or finetune, got {self.mode!r}")
        if self.encoder_lr <= 0 or self.finetune_epochs < 1 or self.workers < 0:
            raise ValueError("params.yaml: train needs encoder_lr > 0, finetune_epochs >= 1, workers >= 0")
        if not all(isinstance(v, dict) for v in self.fusions.values()):
            raise ValueError("params.yaml: train.fusions maps each method to its options (a mapping)")
        if self.select_on and self.mode != "finetune":
            raise ValueError("params.yaml: train.select_on chooses a fine-tuned epoch: it needs train.mode finetune")


@dataclass(frozen=True)
class RegisterParams:
    model_name: str = "mmops-classifier"
    experiment: str = "mmops"
    alias: str = "challenger"
    # Register only a model its lineage can rebuild: trained from committed code, params and
    # data.dvc. `dvc exp run` works on uncommitted params, so experiments do not register.
    require_committed: bool = True


@dataclass(frozen=True)
class PromoteParams:
    """The gate (`mmops promote`): floors the challenger must pass, and how much worse than the
    champion it may be (judged paired, per sample)."""

    min_macro_f1: float = 0.75  # fused, on the held-out split
    # fused macro-F1 minus the best single modality's: the lower end of its paired 95% interval
    min_margin_over_best_modality: float = 0.0
    max_p95_latency_ms: float = 250.0  # one-record prediction through the registered model, here
    max_regression: float = 0.02  # lower end of the paired 95% interval of the macro-F1 difference
    bootstrap_resamples: int = 2000  # each draws the test split's groups, not its rows
    # Fewer test rows than this that the champion never trained or validated on: no fair
    # comparison, the floors alone decide.
    min_comparison_samples: int = 50
    # On each shift set's rows whose ids are in the test split: the best single modality's
    # accuracy minus the fused one's, and how far the fused accuracy may fall below the champion's
    max_shift_regret: float = 0.02
    max_shift_drop: float = 0.03
    seed: int = 0
    champion_alias: str = "champion"
    previous_alias: str = "previous"
    experiment: str = "mmops-promotions"  # one run per decision, promoted, refused or rolled back

    def __post_init__(self) -> None:
        if self.bootstrap_resamples < 100 or self.max_regression < 0 or self.min_comparison_samples < 1 \
                or self.max_shift_drop < 0:
            raise ValueError("params.yaml: promote needs bootstrap_resamples >= 100, max_regression >= 0, "
                             "min_comparison_samples >= 1 and max_shift_drop >= 0")


@dataclass(frozen=True)
class ServeParams:
    """What the served model accepts in one request; stored with each registered model, which
    enforces it."""

    max_records: int = 256
    max_value_bytes: int = 2_000_000  # one value as sent: a base64 image, a text
    chunk_size: int = 32  # records decoded and encoded at a time, so memory stays flat

    def __post_init__(self) -> None:
        if min(self.max_records, self.max_value_bytes, self.chunk_size) < 1:
            raise ValueError("params.yaml: serve needs max_records, max_value_bytes and chunk_size >= 1")


@dataclass(frozen=True)
class ScaleParams:
    """Where sharded work runs (`flows/featurize.py`): how many shards the manifest is cut into,
    and on which Dask cluster. No DVC stage reads it: where features are made never changes
    what they are, so changing it reruns nothing."""

    shards: int = 2
    dask_address: str | None = None  # None: a LocalCluster on this machine; else `tcp://host:8786`
    local_workers: int = 2  # the LocalCluster's worker processes (one task at a time each)

    def __post_init__(self) -> None:
        if self.shards < 1 or self.local_workers < 1 or self.dask_address == "":
            raise ValueError("params.yaml: scale needs shards >= 1, local_workers >= 1 and "
                             "dask_address null or a scheduler address")


@dataclass(frozen=True)
class DriftParams:
    """When new data counts as drifted from the reference (params.yaml `drift:`)."""

    # Significance level of every test. Small, because a check that cries wolf on every data
    # version gets switched off.
    alpha: float = 0.01
    # Effect-size floor for the measures' KS tests (the largest gap between the two cumulative
    # distributions): a tenth of the data shifted is worth a look, less is noise on big data.
    min_ks_statistic: float = 0.1
    # Label mix: drifted when some class's share moves by more than this (absolute), and the
    # chi-square test says it is not chance.
    max_label_shift: float = 0.05
    # Principal components of each modality's features kept in the profile (the classifier
    # test runs on them): enough to see new art or inverted images, few enough to keep the
    # profile near 1 MB for the sample's 1300 training rows.
    components: int = 32
    # Features: drifted when a classifier tells new rows from reference rows apart with an AUC
    # above this (0.5: not at all). Measured on the sample (1300 reference rows): held-out rows
    # of the same data 0.52, a class removed 0.56, inverted images 0.70, Twitter's art 0.76.
    max_auc: float = 0.6
    # A class of the reference with no new rows is absent only when the reference had at least
    # this many rows of it and the new rows should hold at least this many (its share of them):
    # with fewer, missing it is chance (five expected and none seen: p < 0.01).
    min_class_rows: int = 5
    # Drift is a reason to retrain, not to refuse: validate (labels, measures) and featurize
    # (features) record it, the run goes on and the gate judges the retrained model. True: a
    # drifted data version stops at validate (an opt-in, e.g. for a hand-run pipeline).
    fail_validate: bool = False

    def __post_init__(self) -> None:
        if not (0 < self.alpha < 1 and 0 <= self.min_ks_statistic < 1 and 0 <= self.max_label_shift < 1
                and self.components >= 1 and 0.5 <= self.max_auc < 1 and self.min_class_rows >= 1):
            raise ValueError("params.yaml: drift needs 0 < alpha < 1, 0 <= min_ks_statistic < 1, "
                             "0 <= max_label_shift < 1, components >= 1, 0.5 <= max_auc < 1 "
                             "and min_class_rows >= 1")


@dataclass(frozen=True)
class ShiftParams:
    """The `shift` stage: labelled sets in the data contract (name -> manifest; media paths relative
    to the manifest's folder), drawn another way than the training data, each scored by the
    trained model. A listed set that is absent is skipped, with a message."""

    sets: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Params:
    data: DataParams
    modalities: tuple[ModalityParams, ...]
    clean: CleanParams = field(default_factory=CleanParams)
    split: SplitParams = field(default_factory=SplitParams)
    augment: AugmentParams = field(default_factory=AugmentParams)
    featurize: FeaturizeParams = field(default_factory=FeaturizeParams)
    train: TrainParams = field(default_factory=TrainParams)
    register: RegisterParams = field(default_factory=RegisterParams)
    promote: PromoteParams = field(default_factory=PromoteParams)
    serve: ServeParams = field(default_factory=ServeParams)
    scale: ScaleParams = field(default_factory=ScaleParams)
    drift: DriftParams = field(default_factory=DriftParams)
    shift: ShiftParams = field(default_factory=ShiftParams)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able form, shaped as params.yaml (paths as strings, tuples as lists)."""
        raw = json.loads(json.dumps(dataclasses.asdict(self), default=str))
        raw["modalities"] = [{k: v for k, v in m.items() if k != "options"} | m["options"] for m in raw["modalities"]]
        return raw

    def digest(self) -> str:
        """A short stable hash of every parameter that shapes the model, for lineage tags (the
        gate's settings, the drift thresholds, the shift sets it is measured on and where the work
        ran do not: a model's lineage must not change when a floor or the cluster does)."""
        raw = self.to_dict()
        raw.pop("promote")
        raw.pop("scale")
        raw.pop("drift")
        raw.pop("shift")
        blob = json.dumps(raw, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
