"""The CLIP-style alignment objective: low when each sample's image and text agree, minimised
by training, blind to samples that lack a modality; and recall@k as its evidence."""

import pytest
import torch

from mmops.evaluation.retrieval import recall_at_k, retrieval_scores
from mmops.models.fusion.align import Alignment


def _paired(n: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(n, 8, generator=g)
    return {"image": shared @ torch.randn(8, 12, generator=g), "text": shared @ torch.randn(8, 10, generator=g)}


def _present(n: int = 64):
    return {"image": torch.ones(n, dtype=torch.bool), "text": torch.ones(n, dtype=torch.bool)}


def test_training_the_alignment_lowers_its_loss_and_retrieves_each_samples_own_pair():
    torch.manual_seed(0)
    embeddings, present = _paired(), _present()
    align = Alignment({"image": 12, "text": 10}, dim=8)
    before = float(align.loss(embeddings, present).detach())
    optimizer = torch.optim.Adam(align.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        align.loss(embeddings, present).backward()
        optimizer.step()
    assert float(align.loss(embeddings, present).detach()) < before / 4
    with torch.no_grad():
        aligned = align(embeddings)
    assert recall_at_k(aligned["image"], aligned["text"])["recall@1"] > 0.9


def test_shuffled_pairs_are_not_retrieved():
    torch.manual_seed(0)
    embeddings = _paired()
    align = Alignment({"image": 12, "text": 10}, dim=8)
    optimizer = torch.optim.Adam(align.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        align.loss(embeddings, _present()).backward()
        optimizer.step()
    with torch.no_grad():
        aligned = align(embeddings)
    shuffled = aligned["text"][torch.randperm(64, generator=torch.Generator().manual_seed(1))]
    assert recall_at_k(aligned["image"], shuffled)["recall@5"] < 0.3


def test_a_sample_without_one_of_the_modalities_is_left_out_of_the_loss():
    embeddings, present = _paired(), _present()
    align = Alignment({"image": 12, "text": 10}, dim=8)
    present["text"][:10] = False
    broken = {**embeddings, "text": embeddings["text"].clone()}
    broken["text"][:10] = 1e6  # what a missing text's embedding holds does not matter
    assert torch.allclose(align.loss(embeddings, present), align.loss(broken, present))
    none_paired = {"image": torch.zeros(64, dtype=torch.bool), "text": torch.ones(64, dtype=torch.bool)}
    assert float(align.loss(embeddings, none_paired)) == 0.0


def test_recall_counts_a_tie_against_the_query_and_needs_pairs():
    same = torch.nn.functional.normalize(torch.ones(4, 3), dim=1)  # every candidate ties
    assert recall_at_k(same, same, ks=(1, 4)) == {"recall@1": 0.0, "recall@4": 1.0}
    with pytest.raises(ValueError, match="as many queries as candidates"):
        recall_at_k(same, same[:2])


def test_retrieval_is_scored_both_ways_on_the_samples_with_both():
    eye = torch.eye(4)
    scores = retrieval_scores({"image": eye, "text": eye}, {"image": torch.tensor([1, 1, 1, 0]).bool(),
                                                            "text": torch.ones(4, dtype=torch.bool)})
    assert scores == {"image->text": {"recall@1": 1.0, "recall@5": 1.0, "samples": 3},
                      "text->image": {"recall@1": 1.0, "recall@5": 1.0, "samples": 3}}


def test_adding_an_alignment_head_draws_nothing_from_the_global_generator():
    from mmops.models.fusion import build_fusion, fusion_options

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_fusion("late", {"image": 6, "text": 4}, 3, **fusion_options("late", None)).align(8)
    # ...but this test builds the model first, which draws: compare against the same build alone
    after_aligned = torch.rand(3)
    torch.manual_seed(0)
    build_fusion("late", {"image": 6, "text": 4}, 3, **fusion_options("late", None))
    assert torch.equal(torch.rand(3), after_aligned)
    assert not torch.equal(after_aligned, expected)  # precondition: building the model itself draws
