"""The Mult-DAE module and the ranking metrics, on hand-sized inputs."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.model import MultiDAE, MultiDAEConfig, multinomial_loss, pad_batch
from common.ranking_metrics import ndcg_at_k, rank_excluding, recall_at_k, summarize


def test_shapes_and_layer_sizes():
    model = MultiDAE(MultiDAEConfig(n_items=40, dims=[12, 5]))
    sizes = [(l.in_features, l.out_features) for l in model.layers]
    assert model.input.weight.shape == (40, 12) and sizes == [(12, 5), (5, 12), (12, 40)]
    items, lengths = pad_batch([[1, 2, 3], [7], []])
    assert items.shape == (3, 3) and lengths.tolist() == [3, 1, 0]
    assert model(items, lengths).shape == (3, 40)


def test_sparse_input_equals_dense_normalised_row():
    """EmbeddingBag with per-sample weights is Linear on the L2-normalised binary row (eval: no dropout)."""
    torch.manual_seed(0)
    model = MultiDAE(MultiDAEConfig(n_items=30, dims=[8, 4])).eval()
    lists = [[0, 5, 29], [3], [1, 2, 4, 8, 16]]
    items, lengths = pad_batch(lists)
    dense = torch.zeros(3, 30)
    for r, ids in enumerate(lists):
        dense[r, ids] = 1.0
    h = torch.tanh(F.normalize(dense) @ model.input.weight + model.input_bias)
    for i, layer in enumerate(model.layers):
        h = layer(h) if i == len(model.layers) - 1 else torch.tanh(layer(h))
    assert torch.allclose(model(items, lengths), h, atol=1e-5)


def test_padding_ids_carry_no_weight():
    model = MultiDAE(MultiDAEConfig(n_items=10, dims=[4, 2])).eval()
    a = model(torch.tensor([[3, 0, 0]]), torch.tensor([1]))
    b = model(torch.tensor([[3, 9, 9]]), torch.tensor([1]))
    assert torch.allclose(a, b)


def test_dropout_only_in_training():
    model = MultiDAE(MultiDAEConfig(n_items=50, dims=[8, 4], dropout=0.5))
    items, lengths = pad_batch([list(range(40))])
    model.train()
    weights = model.input_weights(lengths, items.shape[1])
    kept = weights[weights > 0]
    assert 0 < len(kept) < 40  # some items dropped, the survivors scaled by 1/(1-p)
    assert torch.allclose(kept, torch.full_like(kept, 2.0 / math.sqrt(40)))
    model.eval()
    assert torch.allclose(model.input_weights(lengths, 40), torch.full((1, 40), 1 / math.sqrt(40)))


def test_multinomial_loss_by_hand():
    logits = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    items, lengths = pad_batch([[2, 0], [1]])
    log_p = torch.log_softmax(logits, dim=1)
    expected = (-(log_p[0, 2] + log_p[0, 0]) - log_p[1, 1]) / 2
    assert torch.isclose(multinomial_loss(logits, items, lengths), expected)


def test_training_steps_lower_the_loss():
    torch.manual_seed(1)
    model = MultiDAE(MultiDAEConfig(n_items=20, dims=[8, 4], dropout=0.0))
    items, lengths = pad_batch([[0, 1, 2], [0, 1], [10, 11, 12, 13]])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = multinomial_loss(model(items, lengths), items, lengths).item()
    for _ in range(30):
        loss = multinomial_loss(model(items, lengths), items, lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.6


def test_recall_by_hand():
    ranked = np.array([[5, 1, 9, 2], [3, 4, 6, 7]])
    # user 0: targets {1, 2, 8}: top-2 hits 1 -> 1/min(2,3); top-4 hits 1, 2 -> 2/3
    # user 1: target {7}: top-2 none -> 0; top-4 hit -> 1/min(4,1) = 1
    targets = [[1, 2, 8], [7]]
    assert np.allclose(recall_at_k(ranked, targets, 2), [0.5, 0.0])
    assert np.allclose(recall_at_k(ranked, targets, 4), [2 / 3, 1.0])


def test_ndcg_by_hand():
    ranked = np.array([[5, 1, 9, 2], [7, 4, 6, 3]])
    targets = [[1, 2, 8], [7]]
    dcg0 = 1 / math.log2(3) + 1 / math.log2(5)
    idcg0 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert np.allclose(ndcg_at_k(ranked, targets, 4), [dcg0 / idcg0, 1.0])
    with pytest.raises(ValueError):
        ndcg_at_k(ranked, [[1], []], 4)


def test_rank_excluding_and_summary():
    scores = np.array([[0.9, 0.8, 0.1, 0.5] + [0.0] * 196])
    ranked = rank_excluding(scores, [[0]], 100)
    assert ranked[0, :3].tolist() == [1, 3, 2] and 0 not in ranked[0]
    figures = summarize(ranked, [[3]])
    assert figures["recall@20"][0] == 1.0 and np.isclose(figures["ndcg@100"][0], 1 / math.log2(3))
