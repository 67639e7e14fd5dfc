import pytest
import torch

from mmops.models.fusion import FUSIONS, FusionModel, all_present, build_fusion
from mmops.models.fusion.late import simplex_grid


def _model():
    torch.manual_seed(0)
    return build_fusion("late", {"image": 6, "text": 4}, 3, hidden_dim=8, dropout=0.0).eval()


def _features(n=5):
    return {"image": torch.randn(n, 6), "text": torch.randn(n, 4)}


def test_the_factory_builds_the_method_named_in_params():
    model = _model()
    assert isinstance(model, FusionModel) and model.method == "late" and "late" in FUSIONS
    assert model.arguments() == {"hidden_dim": 8, "dropout": 0.0}


def test_an_unknown_fusion_method_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown 'train.fusion' 'early'.*known: attention, concat, gated, late"):
        build_fusion("early", {"image": 6}, 3)


def test_fused_output_is_a_probability_distribution():
    feats = _features()
    out = _model().log_probs(feats, all_present(feats))
    assert set(out) == {"image", "text", "fused"}
    assert torch.allclose(out["fused"].exp().sum(1), torch.ones(5), atol=1e-5)


def test_a_missing_modality_is_masked_not_an_error():
    model, feats = _model(), _features()
    present = {"image": torch.tensor([True, False, True, True, False]), "text": torch.tensor([True, True, False, True, True])}
    out = model.log_probs(feats, present)
    # Where only one modality is present, the fused prediction is exactly that modality's.
    assert torch.allclose(out["fused"][1], out["text"][1], atol=1e-6)
    assert torch.allclose(out["fused"][2], out["image"][2], atol=1e-6)
    assert not torch.allclose(out["fused"][0], out["text"][0], atol=1e-3)


def test_fusion_weights_move_the_mixture():
    model, feats = _model(), _features()
    log_probs = model.log_probs(feats, all_present(feats))
    only_image = model.fuse(log_probs, all_present(feats), weights=torch.tensor([1.0, 0.0]))
    assert torch.allclose(only_image, log_probs["image"], atol=1e-5)


def test_a_sample_with_no_modality_is_refused():
    present = {"image": torch.tensor([False]), "text": torch.tensor([False])}
    with pytest.raises(ValueError, match="at least one modality"):
        _model().log_probs(_features(1), present)


def test_validation_step_puts_the_weight_on_the_modality_that_knows_the_answer():
    model = _model()
    target = torch.arange(60) % 3
    g = torch.Generator().manual_seed(0)
    informed = torch.log_softmax(torch.nn.functional.one_hot(target, 3).float() * 4, dim=1)
    noise = torch.log_softmax(torch.randn(60, 3, generator=g) * 3, dim=1)
    present = {"image": torch.ones(60, dtype=torch.bool), "text": torch.ones(60, dtype=torch.bool)}
    model.fit_on_validation({"image": noise, "text": informed}, target, present)
    assert model.fusion_weights[1] >= 0.8
    model.fit_on_validation({"image": informed, "text": noise}, target, present)
    assert model.fusion_weights[0] >= 0.8


def test_the_weight_grid_covers_the_simplex_for_any_number_of_modalities():
    grid = simplex_grid(3, steps=4)
    assert len(grid) == 15 and torch.allclose(grid.sum(1), torch.ones(15))
    assert any(torch.equal(row, torch.tensor([0.0, 0.0, 1.0])) for row in grid)


def _explained(model, features, present):
    model.eval()
    with torch.no_grad():
        outputs = model.log_probs(features, present)
    chosen = outputs["fused"].argmax(1)
    return outputs, chosen


def test_late_fusion_shares_are_weight_times_probability_and_sum_to_the_fused_one():
    torch.manual_seed(0)
    model = build_fusion("late", {"image": 4, "text": 3}, 5, hidden_dim=0, dropout=0.0)
    model.fusion_weights.copy_(torch.tensor([0.3, 0.7]))
    features = {"image": torch.randn(3, 4), "text": torch.randn(3, 3)}
    present = {"image": torch.tensor([True, True, False]), "text": torch.tensor([True, False, True])}
    outputs, chosen = _explained(model, features, present)
    shares = model.contributions(features, present, outputs, chosen)
    fused = outputs["fused"].exp()[torch.arange(3), chosen]
    assert shares["image"][0] == pytest.approx(0.3 * float(outputs["image"][0, chosen[0]].exp()), abs=1e-6)
    assert float(shares["image"][0] + shares["text"][0]) == pytest.approx(float(fused[0]), abs=1e-6)
    # alone, a modality carries the whole of it; absent, it has no share
    assert float(shares["image"][1]) == pytest.approx(float(fused[1]), abs=1e-6)
    assert torch.isnan(shares["text"][1]) and torch.isnan(shares["image"][2])


def test_a_calibrated_late_models_shares_split_its_served_confidence_as_the_mixture_does():
    torch.manual_seed(0)
    model = build_fusion("late", {"image": 4, "text": 3}, 5, hidden_dim=0, dropout=0.0)
    model.fusion_weights.copy_(torch.tensor([0.3, 0.7]))
    features = {"image": torch.randn(3, 4), "text": torch.randn(3, 3)}
    present = {"image": torch.ones(3, dtype=torch.bool), "text": torch.tensor([True, False, True])}
    raw, chosen = _explained(model, features, present)
    model.temperatures = {"image": 2.0, "text": 0.7, "fused": 1.5}
    outputs, _ = _explained(model, features, present)
    shares = model.contributions(features, present, outputs, chosen)
    served = outputs["fused"].exp()[torch.arange(3), chosen]
    assert float(shares["image"][0] + shares["text"][0]) == pytest.approx(float(served[0]), abs=1e-6)
    image_part = 0.3 * raw["image"][0, chosen[0]].exp()
    text_part = 0.7 * raw["text"][0, chosen[0]].exp()
    assert float(shares["image"][0]) == pytest.approx(float(served[0] * image_part / (image_part + text_part)), abs=1e-6)
    assert float(shares["image"][1]) == pytest.approx(float(served[1]), abs=1e-6)  # alone: all of it


def test_any_fusion_can_explain_by_leaving_each_modality_out():
    torch.manual_seed(1)
    model = build_fusion("late", {"image": 4, "text": 3}, 5, hidden_dim=0, dropout=0.0)
    features = {"image": torch.randn(2, 4), "text": torch.randn(2, 3)}
    present = {"image": torch.tensor([True, True]), "text": torch.tensor([True, False])}
    outputs, chosen = _explained(model, features, present)
    shares = FusionModel.contributions(model, features, present, outputs, chosen)  # the generic rule
    fused = outputs["fused"].exp()
    with torch.no_grad():
        text_only = model.log_probs(features, {"image": torch.tensor([False, False]), "text": torch.tensor([True, True])})["fused"].exp()
        image_only = model.log_probs(features, {"image": torch.tensor([True, True]), "text": torch.tensor([False, False])})["fused"].exp()
    c = chosen.tolist()
    assert float(shares["image"][0]) == pytest.approx(float(fused[0, c[0]] - text_only[0, c[0]]), abs=1e-6)
    assert float(shares["text"][0]) == pytest.approx(float(fused[0, c[0]] - image_only[0, c[0]]), abs=1e-6)
    # the only modality of a record: measured against knowing nothing (uniform over 5 classes)
    assert float(shares["image"][1]) == pytest.approx(float(fused[1, c[1]]) - 1 / 5, abs=1e-6)
    assert torch.isnan(shares["text"][1])


def test_a_modality_alone_has_the_whole_share_even_where_its_fitted_weight_is_zero():
    torch.manual_seed(0)
    model = build_fusion("late", {"image": 4, "text": 3}, 5, hidden_dim=0, dropout=0.0)
    model.fusion_weights.copy_(torch.tensor([0.0, 1.0]))  # a fit at the edge of the simplex
    features = {"image": torch.randn(3, 4), "text": torch.randn(3, 3)}
    present = {"image": torch.tensor([True, True, False]), "text": torch.tensor([False, True, True])}
    outputs, chosen = _explained(model, features, present)
    shares = model.contributions(features, present, outputs, chosen)
    fused = outputs["fused"].exp()[torch.arange(3), chosen]
    # only the zero-weight image: the fused answer is the image's, and so is all of its share
    assert not torch.isnan(shares["image"][0])
    assert float(shares["image"][0]) == pytest.approx(float(fused[0]), abs=1e-6)
    # every present modality has a number, and the shares add up to the fused probability
    assert float(shares["image"][1]) == pytest.approx(0.0, abs=1e-6)
    assert float(shares["image"][1] + shares["text"][1]) == pytest.approx(float(fused[1]), abs=1e-6)
    assert torch.isnan(shares["text"][0]) and torch.isnan(shares["image"][2])


def test_a_feature_constant_in_training_is_centred_not_blown_up_by_a_tiny_spread():
    from mmops.models.fusion.parts import Standardise

    train = torch.randn(50, 3)
    train[:, 1] = 0.0  # a channel no training image activates
    scale = Standardise(3)
    scale.fit(train)
    served = scale(torch.tensor([[0.0, 0.05, 0.0]]))  # an input that does activate it
    assert served[0, 1] == pytest.approx(0.05)
    assert scale(train)[:, [0, 2]].std(0, correction=0).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
