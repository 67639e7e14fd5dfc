"""Reading `params.yaml` into `Params`: each section checked for unknown keys and wrong types,
data paths resolved against the file's folder."""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any

import yaml

from mmops.config.params import (AugmentParams, CleanParams, Columns, DataParams, DriftParams, FeaturizeParams,
                                 ModalityParams, Params, PromoteParams, RegisterParams, ScaleParams, ServeParams,
                                 ShiftParams, SplitParams, TrainParams)


def build_section(cls: type, raw: dict[str, Any] | None, section: str) -> Any:
    """`cls` from a YAML mapping, refusing unknown keys and values of the wrong type."""
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"params.yaml: '{section}' must be a mapping")
    raw = dict(raw or {})
    defaults = cls()  # each field's default gives the type its value must have
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"params.yaml: unknown key(s) in '{section}': {', '.join(unknown)}")
    for key, value in raw.items():
        expected = type(getattr(defaults, key))
        if getattr(defaults, key) is None:  # optional: null, or the other type its annotation names
            if value is None:
                continue
            expected = next(t for t in typing.get_args(typing.get_type_hints(cls)[key]) if t is not type(None))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            raw[key] = float(value)
        elif expected is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
            raw[key] = tuple(value)  # YAML lists of words
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(f"params.yaml: '{section}.{key}' must be {expected.__name__}, got {value!r}")
    return cls(**raw)


def params_from_dict(raw: dict[str, Any], base: Path = Path(".")) -> Params:
    """Build `Params` from the parsed YAML; relative data paths are resolved against `base`."""
    sections = {"data", "modalities", "clean", "split", "augment", "featurize", "train", "register", "promote", "serve", "scale", "drift",
                "shift"}
    unknown = sorted(set(raw) - sections)
    if unknown:
        raise ValueError(f"params.yaml: unknown section(s): {', '.join(unknown)}")
    data_raw = dict(raw.get("data") or {})
    root = base / data_raw.pop("root", "data")
    manifest = base / data_raw.pop("manifest", "data/metadata.csv")
    # data.root is what dvc.yaml tracks and what lineage quotes: the manifest must sit inside it.
    if not Path(os.path.normpath(manifest)).is_relative_to(os.path.normpath(root)):
        raise ValueError(f"params.yaml: 'data.manifest' ({manifest}) must be inside 'data.root' ({root})")
    labels = data_raw.get("labels")
    if not isinstance(labels, list) or len(labels) < 2 or len(set(map(str, labels))) != len(labels):
        raise ValueError("params.yaml: 'data.labels' must be a list of at least two distinct classes")
    data = DataParams(
        root=root,
        manifest=manifest,
        columns=build_section(Columns, data_raw.pop("columns", None), "data.columns"),
        labels=tuple(str(label) for label in data_raw.pop("labels")),
    )
    if data_raw:
        raise ValueError(f"params.yaml: unknown key(s) in 'data': {', '.join(sorted(data_raw))}")
    params = Params(
        data=data,
        modalities=_modalities(raw.get("modalities"), data.columns),
        clean=build_section(CleanParams, raw.get("clean"), "clean"),
        split=build_section(SplitParams, raw.get("split"), "split"),
        augment=_augment(raw.get("augment"), base),
        featurize=build_section(FeaturizeParams, raw.get("featurize"), "featurize"),
        train=build_section(TrainParams, raw.get("train"), "train"),
        register=build_section(RegisterParams, raw.get("register"), "register"),
        promote=build_section(PromoteParams, raw.get("promote"), "promote"),
        serve=build_section(ServeParams, raw.get("serve"), "serve"),
        scale=build_section(ScaleParams, raw.get("scale"), "scale"),
        drift=build_section(DriftParams, raw.get("drift"), "drift"),
        shift=_shift(raw.get("shift"), base),
    )
    unknown = sorted(set(params.train.select_on) - set(params.shift.sets))
    if unknown:
        raise ValueError(f"params.yaml: 'train.select_on' names {', '.join(unknown)}, not in 'shift.sets'")
    return params


def _augment(raw: Any, base: Path) -> AugmentParams:
    """The `augment:` section, its drawing sets' manifests relative to params.yaml's folder like `data`'s."""
    section = build_section(AugmentParams, raw, "augment")
    for name, manifest in section.drawings.items():
        if not isinstance(manifest, str) or not manifest:
            raise ValueError(f"params.yaml: 'augment.drawings.{name}' must be the path of a manifest")
    return dataclasses.replace(section, drawings={str(n): str(base / m) for n, m in section.drawings.items()})


def _shift(raw: Any, base: Path) -> ShiftParams:
    """The `shift:` section, its manifests relative to params.yaml's folder like `data`'s."""
    section = build_section(ShiftParams, raw, "shift")
    for name, manifest in section.sets.items():
        if not isinstance(manifest, str) or not manifest:
            raise ValueError(f"params.yaml: 'shift.sets.{name}' must be the path of a manifest")
    return ShiftParams(sets={str(name): str(base / manifest) for name, manifest in section.sets.items()})


def _modalities(raw: Any, columns: Columns) -> tuple[ModalityParams, ...]:
    """The `modalities:` list: at least one entry, distinct names and columns."""
    if not isinstance(raw, list) or not raw:
        raise ValueError("params.yaml: 'modalities' must be a list of at least one modality")
    entries = []
    for i, item in enumerate(raw):
        where = f"modalities[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"params.yaml: '{where}' must be a mapping")
        item = dict(item)
        for key in ("name", "column", "encoder"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise ValueError(f"params.yaml: '{where}.{key}' must be a non-empty string")
        required = item.pop("required", True)
        if not isinstance(required, bool):
            raise ValueError(f"params.yaml: '{where}.required' must be true or false")
        entries.append(ModalityParams(item.pop("name"), item.pop("column"), item.pop("encoder"), required,
                                      options=item))
    names = [m.name for m in entries]
    sources = [m.column for m in entries] + [columns.id, columns.label]
    if len(set(names)) != len(names) or len(set(sources)) != len(sources):
        raise ValueError("params.yaml: each modality needs its own name and column, apart from the id and label columns")
    if "fused" in names:
        raise ValueError("params.yaml: 'fused' is reserved (the fused prediction); rename that modality")
    return tuple(entries)


def load_params(path: Path = Path("params.yaml")) -> Params:
    """Read `params.yaml`; data paths in it are relative to the file's folder."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    return params_from_dict(raw, base=path.parent)
