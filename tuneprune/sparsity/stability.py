"""Mask stability: the Jaccard index of the kept sets of two masks (formulas §3)."""

from __future__ import annotations

import torch


def jaccard_from_counts(intersection: torch.Tensor, count_a: torch.Tensor, count_b: torch.Tensor) -> torch.Tensor:
    """``|A and B| / |A or B|`` (Jaccard: intersection over union) from the counts (elementwise over layers); 1 when both sets are empty."""
    union = count_a + count_b - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1), 1.0)


def jaccard(mask_a: torch.Tensor, mask_b: torch.Tensor) -> float:
    """Jaccard index of the kept (True) entries of two masks; 1.0 for two empty masks (formulas §3)."""
    a, b = mask_a.bool(), mask_b.bool()
    return float(jaccard_from_counts((a & b).sum(), a.sum(), b.sum()))
