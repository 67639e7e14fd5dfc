"""The modality interface: everything the pipeline and serving need to know about one input.

A modality says where it sits in the manifest, how a value is checked (cheaply for validation,
fully for cleaning), read and normalised, how it becomes features (its frozen encoder and what
identifies that encoder), and how serving decodes it from a request. Stages loop over the
modalities declared in params.yaml and never name one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

from mmops.config import ModalityParams, build_section
from mmops.modalities.media import MediaError, content_hash, resolve_media


class Encoder(Protocol):
    """A frozen encoder: values (or sources read with `load`) in, a float32 CPU tensor (N, dim) out."""

    def __call__(self, sources: Sequence[Any], *, batch_size: int,
                 load: Callable[[Any], Any] | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class EncoderSpec:
    """A known encoder: the distributions whose versions decide its features (the weights'
    package and the code that runs them)."""

    packages: tuple[str, ...]


def installed_version(package: str) -> str:
    """The installed version, without a local build tag (torch `2.14.1+cu128` is `2.14.1`), so a
    model trained on a CUDA build is served by a CPU build of the same release."""
    try:
        return version(package).split("+")[0]
    except PackageNotFoundError:
        return "not installed"


class Modality(ABC):
    """One input modality, configured by its `modalities:` entry in params.yaml."""

    name: ClassVar[str]
    media: ClassVar[bool]  # values are files under data.root (their bytes identify duplicates)
    feature_dim: ClassVar[int]
    # the L2 norm a sound feature vector has (the feature cache's suite checks it): outside it,
    # the encoder collapsed (all zeros) or blew up
    feature_norm: ClassVar[tuple[float, float]]
    # the fact (see `facts`) holding a perceptual hash, as hex, of a value: the split groups
    # values whose hashes are close (near-duplicates). None: only identical files are grouped.
    near_duplicate_fact: ClassVar[str | None] = None
    # the names `facts` returns: every row gets these columns (empty where the value is absent)
    fact_names: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type]  # a frozen dataclass of the entry's own options
    encoders: ClassVar[dict[str, EncoderSpec]]

    def __init_subclass__(cls, *, kind: bool = False, **kwargs: Any) -> None:
        # a new modality must say what sound features look like: fail at import, not at the
        # first featurize (a `kind=True` base, such as MediaModality, says it for its subclasses)
        super().__init_subclass__(**kwargs)
        if kind:
            return
        missing = [a for a in ("name", "media", "feature_dim", "feature_norm", "Options", "encoders")
                   if not hasattr(cls, a)]
        if missing:
            raise TypeError(f"modality {cls.__name__} must define {', '.join(missing)}")

    def __init__(self, spec: ModalityParams) -> None:
        if spec.encoder not in self.encoders:
            raise ValueError(f"params.yaml: modality '{spec.name}' has no encoder {spec.encoder!r} "
                             f"(known: {', '.join(sorted(self.encoders))})")
        self.spec = spec
        self.column = spec.column
        self.required = spec.required
        self.options = build_section(self.Options, spec.options, f"modalities.{spec.name}")

    # -- the manifest ----------------------------------------------------------------------
    def may_skip(self, value: Any) -> bool:
        """Whether `value` is absent and allowed to be: the modality is optional per row."""
        return not self.required and not present(value)

    @abstractmethod
    def check(self, value: str, root: Path) -> str | None:
        """Why `value` cannot be used, from cheap checks only (validation): None when fine."""

    def problem(self, value: str, root: Path) -> str | None:
        """Why `value` cannot be used, after every check (cleaning may decode): None when fine.
        Reasons read `<kind>` or `<kind>: <detail>`."""
        return self.check(value, root)

    def normalise(self, value: str) -> str:
        """The manifest value as later stages store it."""
        return value

    def content_key(self, value: str, root: Path) -> str | None:
        """A hash of the value's content (media files), so duplicates can be grouped; None if
        the modality has no content apart from the manifest."""
        return None

    def facts(self, value: str, root: Path) -> dict[str, Any]:
        """Facts about a usable value that Great Expectations cannot compute itself (an image's
        size, mode, bytes), stored as `<modality>_<fact>` columns of the cleaned manifest."""
        return {}

    def near_duplicate_distance(self, default: int) -> int:
        """How many bits two values' perceptual hashes (`near_duplicate_fact`) may differ by and
        still be one group: `split.near_duplicate_distance` (`default`, set for images' hashes)
        unless the modality's hash needs its own; -1 groups identical files only."""
        return default

    def expectations(self) -> list[Any]:
        """Great Expectations expectations on this modality's columns of the cleaned manifest
        (its facts among them), beyond the ones every modality gets."""
        return []

    def measures(self, loaded: Any) -> dict[str, float]:
        """A few numbers describing one loaded value (a text's length, an image's size and
        brightness): the drift profile compares their distributions with the reference's."""
        return {}

    @abstractmethod
    def load(self, value: str, root: Path) -> Any:
        """The decoded value the encoder takes."""

    # -- augmentation ----------------------------------------------------------------------
    def augment(self, loaded: Any, strength: float, seed: int) -> Any:
        """A random training view of a loaded value that keeps its label, a pure function of
        (value, strength, seed); strength 0 returns it unchanged. A modality brings its own
        augmentations by overriding this; one that has none returns the value as it is."""
        return loaded

    def store(self, view: Any, folder: Path, stem: str) -> str:
        """A view as a manifest holds it: an inline value as itself; a media modality writes a
        file `stem.<ext>` under `folder` and returns its path relative to `folder`."""
        return str(view)

    # -- features --------------------------------------------------------------------------
    @abstractmethod
    def encoder(self, device: torch.device, dtype: torch.dtype, weights: Weights | None = None) -> Encoder:
        """The frozen encoder, computing in `dtype` (autocast) on `device`; with `weights` (a
        fine-tuned model's, see `trainable`), those instead of the pretrained ones."""

    def trainable(self) -> tuple[torch.nn.Module, Callable[[Any], torch.Tensor]] | None:
        """For a modality whose encoder can be fine-tuned (`train.mode: finetune`): a fresh
        pretrained encoder module (batch of inputs -> features) and the transform that turns one
        loaded value into its input tensor. None: its features stay the cached, frozen ones."""
        return None

    def input_size(self) -> int:
        """The encoder's input size (pixels per side, tokens, ...), part of its identity."""
        return 0

    def identity(self, dtype: torch.dtype, device: torch.device | str = "cpu",
                 weights: Weights | None = None) -> dict[str, Any]:
        """What made (or would make) this modality's features: stored with the features and the
        model, and compared wherever features are made or used. The kind of device counts as
        much as the precision: CUDA and CPU kernels (bf16 autocast above all) give other numbers.
        A fine-tuned encoder adds a hash of its `weights`, so the pretrained one never passes for it."""
        fine_tuned = {"weights": weights_digest(weights)} if weights is not None else {}
        return fine_tuned | {
            "modality": self.name,
            "encoder": self.spec.encoder,
            "packages": {p: installed_version(p) for p in self.encoders[self.spec.encoder].packages},
            "input_size": self.input_size(),
            "dtype": str(dtype).removeprefix("torch."),
            "device": torch.device(device).type,
            "dim": self.feature_dim,
        }

    # -- serving ---------------------------------------------------------------------------
    @abstractmethod
    def from_request(self, value: Any) -> Any | None:
        """A request's value decoded for the encoder; None when absent. Raises `ValueError`
        with a readable reason when present but unusable."""

    @abstractmethod
    def to_request(self, value: str, root: Path) -> str:
        """A manifest value in the form a request carries it (for the input example)."""


class MediaModality(Modality, kind=True):
    """A modality whose manifest values are files under the data root (images, clips) and whose
    request values are those files' bytes in base64: the path checks, the content hash that
    groups identical files, and the request decoding, the same for every kind of media. A
    subclass decodes the bytes (`load`, `from_request`), raising `MediaError` for unusable ones."""

    media = True

    def check(self, value: str, root: Path) -> str | None:
        try:
            path = resolve_media(root, value)
        except ValueError as err:
            return f"bad {self.name} path: {err}"
        return None if path.is_file() else f"{self.name} file not found"

    def problem(self, value: str, root: Path) -> str | None:
        reason = self.check(value, root)
        if reason is None:
            try:
                self.load(value, root)
            except MediaError as err:
                return str(err)
        return reason

    def content_key(self, value: str, root: Path) -> str:
        return content_hash(resolve_media(root, value))

    def request_bytes(self, value: Any) -> bytes | None:
        """A request's base64 value as bytes; None when absent. Raises `ValueError` with a
        readable reason for anything else."""
        if not present(value):
            return None
        if not isinstance(value, str):
            raise ValueError(f"must be a base64 string, got {type(value).__name__}")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"not base64: {err}") from err

    def to_request(self, value: str, root: Path) -> str:
        return base64.b64encode(resolve_media(root, value).read_bytes()).decode()


Weights = dict[str, torch.Tensor]  # an encoder's state dict


def weights_digest(weights: Weights) -> str:
    """sha256 over an encoder's tensors, by name: the same weights give the same digest."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        tensor = weights[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def present(value: Any) -> bool:
    """Whether a request or manifest value is there at all (None, NaN and blank text are not)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return not isinstance(value, str) or value.strip() != ""
