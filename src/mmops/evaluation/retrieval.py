"""Cross-modal retrieval: the evidence that an alignment objective put the modalities in one
space. Each query of one modality ranks every candidate of the other by cosine similarity; its
own sample's candidate should come first."""

from __future__ import annotations

import torch


def recall_at_k(queries: torch.Tensor, candidates: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """For unit-length (N, D) `queries` and `candidates` where row i of each is the same sample:
    the share of queries whose own candidate ranks in the top k (ties count against it), per k.
    Chance is k / N."""
    if len(queries) != len(candidates) or len(queries) == 0:
        raise ValueError(f"retrieval needs as many queries as candidates, and some: {len(queries)} and {len(candidates)}")
    similarity = queries.float() @ candidates.float().T
    own = similarity.diagonal().unsqueeze(1)
    rank = (similarity >= own).sum(dim=1)  # 1 when the own candidate is strictly best
    return {f"recall@{k}": float((rank <= k).float().mean()) for k in ks}


def retrieval_scores(aligned: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """`recall_at_k` for every ordered pair of modalities ("image->text"), over the samples
    that have both, with the number of those samples."""
    scores = {}
    for a in aligned:
        for b in aligned:
            both = present[a].cpu() & present[b].cpu()
            if a != b and int(both.sum()) > 0:
                scores[f"{a}->{b}"] = {**recall_at_k(aligned[a][both], aligned[b][both]), "samples": int(both.sum())}
    return scores
