"""Every fusion method keeps the interface's promises (a distribution out, an absent modality
without influence, "a modality alone" meaning the fused path with the others masked, a
checkpoint that rebuilds it); each method's options are checked; concatenation learns what a
mixture of per-modality heads cannot; modality dropout never leaves a sample with nothing."""

import pytest
import torch

from mmops.models.checkpoint import checkpoint, model_from_checkpoint
from mmops.models.fusion import FUSED, FUSIONS, build_fusion, fusion_options
from mmops.models.fusion.parts import alone
from mmops.models.temperature import fit_temperature
from mmops.training.train import drop_modalities

METHODS = sorted(FUSIONS)
DIMS = {"image": 6, "text": 4}


def _batch(n: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    features = {m: torch.randn(n, d, generator=g) for m, d in DIMS.items()}
    present = {"image": torch.arange(n) % 4 != 0, "text": torch.arange(n) % 4 != 1}
    return features, present


def _options(method: str, **options):
    small = {"hidden_dim": 8, "dropout": 0.0} | ({"heads": 2} if method == "attention" else {})
    return fusion_options(method, small | options)


def _model(method: str, **options):
    model = build_fusion(method, DIMS, 3, **_options(method, **options))
    features, present = _batch()
    model.prepare(features, present)
    return model.eval()


def test_the_five_methods_are_registered():
    assert METHODS == ["attention", "concat", "gated", "late", "trust"]


@pytest.mark.parametrize("method", METHODS)
def test_fused_output_is_a_distribution_for_every_sample(method):
    features, present = _batch()
    fused = _model(method).log_probs(features, present)[FUSED]
    assert torch.allclose(fused.exp().sum(1), torch.ones(len(fused)), atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_an_absent_modality_does_not_influence_the_fused_answer(method):
    model, (features, present) = _model(method), _batch()
    changed = {**features, "image": features["image"] + 100 * torch.randn_like(features["image"])}
    lacking = ~present["image"]
    with torch.no_grad():
        before, after = model.log_probs(features, present)[FUSED], model.log_probs(changed, present)[FUSED]
    assert torch.allclose(before[lacking], after[lacking], atol=1e-6)
    assert not torch.allclose(before[~lacking], after[~lacking])


@pytest.mark.parametrize("method", METHODS)
def test_a_modality_alone_is_the_fused_path_with_the_others_masked(method):
    model, (features, present) = _model(method), _batch()
    with torch.no_grad():
        out = model.log_probs(features, present)
        for m in DIMS:
            masked = model.log_probs(features, alone(present, m))[FUSED]
            assert torch.allclose(out[m][present[m]], masked[present[m]], atol=1e-5), m


@pytest.mark.parametrize("method", METHODS)
def test_a_calibrated_record_with_one_modality_is_answered_at_that_modalitys_temperature(method):
    torch.manual_seed(0)  # initial weights whose fitted temperatures are all inside their bounds, and distinct
    model, (features, present) = _model(method), _batch()
    with torch.no_grad():
        raw = model.log_probs(features, present)
        # labels the untrained model gets two thirds right (random ones push the temperatures to their bounds)
        target = (raw[FUSED].argmax(1) + (torch.arange(len(raw[FUSED])) % 3 == 0).long()) % 3
        fitted = model.calibrate(raw, target, present)
        out = model.log_probs(features, present)
    assert fitted["image"] != pytest.approx(fitted[FUSED]) and fitted["text"] != pytest.approx(fitted[FUSED])
    for m, other in (("image", "text"), ("text", "image")):
        only = present[m] & ~present[other]
        assert bool(only.any())
        assert torch.allclose(out[FUSED][only], out[m][only], atol=1e-5), m  # the served answer is evaluate's
    both = present["image"] & present["text"]
    with model.uncalibrated(), torch.no_grad():
        raw = model.log_probs(features, present)[FUSED]
    assert torch.allclose(out[FUSED][both], torch.log_softmax(raw[both] / fitted[FUSED], -1), atol=1e-5)
    # ...fitted on the records with both: the single-modality ones have temperatures of their own
    assert fitted[FUSED] == pytest.approx(fit_temperature(raw[both], target[both]))


@pytest.mark.parametrize("method", METHODS)
def test_the_checkpoint_rebuilds_each_method_with_its_options(method):
    model, (features, present) = _model(method, hidden_dim=6), _batch()
    ckpt = checkpoint(model, ["a", "b", "c"], epoch=3, encoders={}, modalities=[])
    assert ckpt["fusion"] == {"method": method, "arguments": _options(method, hidden_dim=6), "alignment": None}
    with torch.no_grad():
        assert torch.allclose(model_from_checkpoint(ckpt).log_probs(features, present)[FUSED], model.log_probs(features, present)[FUSED])


@pytest.mark.parametrize(("options", "message"), [
    ({"hidden": 8}, "unknown key.*'train.fusions.concat': hidden"),
    ({"hidden_dim": "wide"}, "'train.fusions.concat.hidden_dim' must be int"),
    ({"dropout": 1.5}, "dropout < 1"),
])
def test_a_methods_options_are_checked_and_named(options, message):
    with pytest.raises(ValueError, match=message):
        fusion_options("concat", options)


def test_options_not_given_take_the_methods_defaults():
    assert fusion_options("gated", None) == {"hidden_dim": 256, "dropout": 0.2}
    assert fusion_options("attention", {"layers": 2}) == {"hidden_dim": 128, "heads": 4, "layers": 2, "dropout": 0.2}


def test_attention_refuses_a_width_its_heads_do_not_divide():
    with pytest.raises(ValueError, match="train.fusions.attention.*multiple of heads"):
        fusion_options("attention", {"hidden_dim": 10, "heads": 4})


@pytest.mark.parametrize("method", METHODS)
def test_the_output_carries_each_modalitys_embedding_for_every_sample(method):
    features, present = _batch()
    out = _model(method)(features, present)
    assert set(out.log_probs) == {FUSED, *DIMS} and set(out.embeddings) == set(DIMS)
    assert all(len(e) == 40 and bool(e.isfinite().all()) for e in out.embeddings.values())


@pytest.mark.parametrize("method", METHODS)
def test_an_aligned_model_round_trips_its_projections_through_the_checkpoint(method):
    model, (features, present) = _model(method), _batch()
    model.align(16)
    ckpt = checkpoint(model, ["a", "b", "c"], epoch=1, encoders={}, modalities=[])
    assert ckpt["fusion"]["alignment"] == 16
    restored = model_from_checkpoint(ckpt)
    with torch.no_grad():
        a, b = model.alignment(model(features, present).embeddings), restored.alignment(restored(features, present).embeddings)
    assert all(torch.allclose(a[m], b[m]) and a[m].shape == (40, 16) for m in DIMS)


def _fit(method: str, features, target, epochs: int = 300) -> float:
    torch.manual_seed(0)
    model = build_fusion(method, {m: t.shape[1] for m, t in features.items()}, 2, **_options(method, hidden_dim=32))
    present = {m: torch.ones(len(target), dtype=torch.bool) for m in features}
    model.prepare(features, present)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        optimizer.zero_grad()
        model.loss(model.log_probs(features, present), target, present).backward()
        optimizer.step()
    with torch.no_grad():
        model.fit_on_validation(model.log_probs(features, present), target, present)
        return float((model.eval().log_probs(features, present)[FUSED].argmax(1) == target).float().mean())


def test_concatenation_learns_an_interaction_of_the_modalities_that_late_fusion_cannot():
    # the label is image XOR text: neither modality alone says anything about it
    g = torch.Generator().manual_seed(1)
    image, text = torch.randn(400, 1, generator=g), torch.randn(400, 1, generator=g)
    target = ((image[:, 0] > 0) ^ (text[:, 0] > 0)).long()
    features = {"image": image, "text": text}
    assert _fit("concat", features, target) > 0.9
    assert _fit("attention", features, target) > 0.9
    assert _fit("late", features, target) < 0.7


def test_modality_dropout_never_leaves_a_sample_without_a_modality_and_is_seeded():
    present = {"image": torch.tensor([1, 1, 0, 1] * 250).bool(), "text": torch.tensor([1, 0, 1, 1] * 250).bool()}
    dropped = drop_modalities(present, 0.6, torch.Generator().manual_seed(0))
    kept = torch.stack(list(dropped.values()), 1)
    assert bool(kept.any(1).all())  # never nothing left
    assert not bool((kept & ~torch.stack(list(present.values()), 1)).any())  # nothing absent comes back
    both = present["image"] & present["text"]
    assert 0.2 < float((~dropped["image"][both]).float().mean()) < 0.6  # some dropped, at about the rate
    again = drop_modalities(present, 0.6, torch.Generator().manual_seed(0))
    assert all(torch.equal(dropped[m], again[m]) for m in present)
    assert drop_modalities(present, 0.0, torch.Generator()) is present


def _log_probs(rows: list[list[float]], repeat: int, jitter: float, generator: torch.Generator) -> torch.Tensor:
    p = torch.tensor(rows).repeat(repeat, 1)
    p = p + jitter * torch.rand(p.shape, generator=generator)
    return (p / p.sum(1, keepdim=True)).log()


def test_trust_fusion_weighs_each_modality_per_sample_by_its_confidence():
    # every label is class 0. On half the rows the image head is sure and right, on the other
    # half unsure and wrong; the text head is mildly right everywhere
    g = torch.Generator().manual_seed(0)
    sure, unsure = [[0.9, 0.05, 0.05]], [[0.25, 0.5, 0.25]]
    image = torch.cat([_log_probs(sure, 30, 0.05, g), _log_probs(unsure, 30, 0.05, g)])
    text = _log_probs([[0.45, 0.3, 0.25]], 60, 0.05, g)
    outputs, target = {"image": image, "text": text}, torch.zeros(60, dtype=torch.long)
    present = {m: torch.ones(60, dtype=torch.bool) for m in outputs}
    model = build_fusion("trust", {"image": 2, "text": 2}, 3, hidden_dim=0, dropout=0.0)
    unfitted = model.trust(outputs, present)
    assert torch.allclose(unfitted, torch.full((60, 2), 0.5))  # before the fit: the geometric mean
    model.fit_on_validation(outputs, target, present)
    weights = model.trust(outputs, present)[:, 0]  # the image's weight per row
    assert float(weights[:30].min()) > float(weights[30:].max())  # trusted where sure, not where unsure
    assert bool((model.fuse(outputs, present).argmax(1) == 0).all())
    # the geometric mean (equal weights everywhere) follows the unsure image on most of those rows
    geometric = model.fuse(outputs, present, torch.zeros(2, 2))
    assert float((geometric[30:].argmax(1) != 0).float().mean()) > 0.5


def test_trust_fusion_gives_an_absent_modality_no_weight():
    model = build_fusion("trust", {"image": 2, "text": 2}, 3, hidden_dim=0, dropout=0.0)
    model.trust_coefficients.copy_(torch.tensor([[1.0, 2.0], [0.5, -1.0]]))
    lp = torch.log_softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), 1)
    present = {"image": torch.tensor([True, False, True, True]), "text": torch.tensor([True, True, False, True])}
    weights = model.trust({"image": lp, "text": lp.flip(0)}, present)
    assert weights[1].tolist() == [0.0, 1.0] and weights[2].tolist() == [1.0, 0.0]
    assert torch.allclose(weights.sum(1), torch.ones(4))


def test_a_subset_of_modalities_is_scored_through_the_fused_path_with_the_rest_masked():
    from mmops.models.fusion.parts import subsets, together

    assert subsets(("image", "text")) == {}
    assert subsets(("image", "text", "audio")) == {"image-text": ("image", "text"), "image-audio": ("image", "audio"),
                                                   "text-audio": ("text", "audio")}
    present = {"image": torch.tensor([1, 1, 0]).bool(), "text": torch.tensor([1, 1, 1]).bool(),
               "audio": torch.tensor([1, 0, 1]).bool()}
    masked = together(present, ("image", "text"))
    # rows 0 and 1 have the pair: audio hidden there; row 2 lacks image and keeps its own mask
    assert masked["audio"].tolist() == [False, False, True]
    assert masked["image"].tolist() == [True, True, False] and masked["text"].tolist() == [True, True, True]


@pytest.mark.parametrize("method", METHODS)
def test_each_pair_of_three_modalities_answers_as_the_fused_path_given_only_that_pair(method):
    from mmops.models.predict import predict, predict_subsets

    dims = {"image": 6, "text": 4, "audio": 5}
    model = build_fusion(method, dims, 3, **_options(method))
    g = torch.Generator().manual_seed(1)
    features = {m: torch.randn(12, d, generator=g) for m, d in dims.items()}
    present = {"image": torch.arange(12) % 3 != 0, "text": torch.ones(12, dtype=torch.bool),
               "audio": torch.arange(12) % 4 != 1}
    model.prepare(features, present)
    out, rows = predict_subsets(model, features, torch.device("cpu"), present)
    assert set(out.log_probs) == {FUSED, "image", "text", "audio", "image-text", "image-audio", "text-audio"}
    for name, (a, b) in {"image-text": ("image", "text"), "image-audio": ("image", "audio"),
                         "text-audio": ("text", "audio")}.items():
        has_pair = present[a] & present[b]
        assert rows[name].tolist() == has_pair.tolist()
        # a record with just that pair: the pair's answer on the rows that have both (the third
        # modality kept where the pair is incomplete, so every row has something)
        third = next(m for m in dims if m not in (a, b))
        only_pair = {m: present[m] if m in (a, b) else present[m] & ~has_pair for m in dims}
        assert not only_pair[third][has_pair].any()
        alone_pair = predict(model, features, torch.device("cpu"), only_pair).log_probs[FUSED]
        assert torch.allclose(out.log_probs[name][has_pair], alone_pair[has_pair], atol=1e-6)
    assert torch.equal(out.log_probs[FUSED], predict(model, features, torch.device("cpu"), present).log_probs[FUSED])
