"""Held-out evaluation: any scorer against the split's fold-ins and targets (Liang et al. 2018, section 4.2).

A scorer maps (fold-in item lists, user_idx) to scores ``[users, n_items]``;
the fold-in items are never ranked, and the figures are mean NDCG@100,
Recall@20 and Recall@50 over the held-out users. Training (validation after
every epoch), the sweep and the offline comparison all score through here.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from common.model import MultiDAE, pad_batch
from common.ranking_metrics import rank_excluding, summarize

Scorer = Callable[[Sequence[np.ndarray], Optional[np.ndarray]], np.ndarray]


def model_scorer(model: MultiDAE, device: str = "cpu") -> Scorer:
    """Scores (logits) for a batch of users given their fold-in item lists, in eval mode."""

    def score(item_lists: Sequence[np.ndarray], user_idx: Optional[np.ndarray] = None) -> np.ndarray:
        model.eval()
        items, lengths = pad_batch(item_lists)
        with torch.no_grad():
            return model(items.to(device), lengths.to(device)).float().cpu().numpy()

    return score


def evaluate_heldout(score_fn: Scorer, heldout: Dict, batch_size: int = 256) -> Dict[str, float]:
    """Mean NDCG@100, Recall@20, Recall@50 over held-out users (``fold_in``, ``targets``, ``user_idx``)."""
    fold_in, targets = heldout["fold_in"], heldout["targets"]
    if not fold_in:
        return {}
    parts: Dict[str, List[np.ndarray]] = {}
    for start in range(0, len(fold_in), batch_size):
        chunk = fold_in[start : start + batch_size]
        ranked = rank_excluding(score_fn(chunk, heldout["user_idx"][start : start + batch_size]), chunk, 100)
        for name, values in summarize(ranked, targets[start : start + batch_size]).items():
            parts.setdefault(name, []).append(values)
    return {name: float(np.concatenate(v).mean()) for name, v in parts.items()}
