"""The paper's knobs: L2 weight decay reaches the optimiser, the Mult-VAE loss by hand, KL annealing, profiles,
and best-epoch keeping with early stopping (common/training.py)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.config import load_config
from common.model import MultiDAE, MultiDAEConfig, model_loss, pad_batch
from common.training import BestEpoch, Knobs, load_training_config, make_optimizer, train_in_memory, with_profile


def test_weight_decay_reaches_the_optimiser_for_weights_only():
    settings = with_profile(load_config("pipeline.yml", ["multidae.weight_decay=0.3", "multidae.dims=[8, 4]"])["multidae"])
    knobs = Knobs.from_settings(settings)
    model = MultiDAE(knobs.model_config(20))
    optimizer = make_optimizer(model, knobs)
    decays = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert {n for n, p in named.items() if decays[id(p)] == 0.3} == {n for n in named if n.endswith("weight")}
    assert {n for n, p in named.items() if decays[id(p)] == 0.0} == {"input_bias", *(n for n in named if n.endswith("bias"))}
    # With a zero loss the only force is the L2 penalty: weights shrink, biases do not move.
    before = {n: p.detach().clone() for n, p in named.items()}
    (sum(p.sum() for p in model.parameters()) * 0).backward()
    optimizer.step()
    for n, p in named.items():
        if n.endswith("weight"):
            assert p.abs().sum() < before[n].abs().sum(), n
        else:
            assert torch.equal(p, before[n]), n


def hand_vae(model: MultiDAE, lists, eps=None):
    """The Mult-VAE forward pass and loss written out on the dense normalised rows."""
    dense = torch.zeros(len(lists), model.config.n_items)
    for r, ids in enumerate(lists):
        dense[r, ids] = 1.0
    h = torch.tanh(F.normalize(dense) @ model.input.weight + model.input_bias)
    mu_logvar = model.layers[0](h)
    mu, logvar = mu_logvar[:, :2], mu_logvar[:, 2:]
    z = mu if eps is None else mu + eps * torch.exp(0.5 * logvar)
    logits = model.layers[2](torch.tanh(model.layers[1](z)))
    log_p = torch.log_softmax(logits, dim=1)
    nll = -torch.stack([log_p[r, ids].sum() for r, ids in enumerate(lists)]).mean()
    kl = torch.stack([0.5 * (torch.exp(logvar[r]) + mu[r] ** 2 - 1 - logvar[r]).sum() for r in range(len(lists))]).mean()
    return nll, kl


@pytest.mark.parametrize("training", [False, True])
def test_vae_loss_equals_hand_computation(training):
    torch.manual_seed(3)
    model = MultiDAE(MultiDAEConfig(n_items=6, dims=[5, 2], dropout=0.0, variant="vae"))
    assert [(l.in_features, l.out_features) for l in model.layers] == [(5, 4), (2, 5), (5, 6)]
    lists = [[0, 2, 5], [1], [3, 4]]
    items, lengths = pad_batch(lists)
    model.train(training)
    torch.manual_seed(11)
    loss, nll = model_loss(model, items, lengths, beta=0.2)
    eps = None
    if training:  # the same standard-normal draw the model made for its latent sample
        torch.manual_seed(11)
        eps = torch.randn(3, 2)
    hand_nll, hand_kl = hand_vae(model, lists, eps)
    assert hand_kl > 0
    assert torch.allclose(nll, hand_nll, atol=1e-5) and torch.allclose(loss, hand_nll + 0.2 * hand_kl, atol=1e-5)


def test_kl_weight_anneals_to_its_cap():
    vae = Knobs(variant="vae", beta_cap=0.2, anneal_steps=100)
    assert [vae.beta(s) for s in (0, 10, 20, 50, 10_000)] == pytest.approx([0.0, 0.1, 0.2, 0.2, 0.2])
    assert Knobs(variant="dae").beta(50) == 0.0


def test_seed_profile_and_the_command_line_beats_it():
    config = load_training_config("pipeline.yml", ["multidae.profile=seed", "multidae.lr=0.5"])
    knobs = Knobs.from_settings(config["multidae"])
    assert knobs.dims == (300, 50) and knobs.variant == "dae" and knobs.epochs == 10 and knobs.weight_decay == 0.0
    assert knobs.lr == 0.5  # an explicit override wins over the profile
    assert with_profile(config["multidae"]) == config["multidae"]  # applied once
    with pytest.raises(ValueError, match="no such profile"):
        with_profile({**config["multidae"], "profile": "nope"})


def test_best_epoch_keeps_the_peak_weights_and_stops_on_patience():
    model = torch.nn.Linear(2, 2)
    best = BestEpoch(patience=2)
    snapshots = {}
    for epoch, ndcg in enumerate([0.1, 0.3, 0.2, 0.25], start=1):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        snapshots[epoch] = model.weight.detach().clone()
        best.update({"epoch": epoch, "val_ndcg@100": ndcg}, model)
        assert best.should_stop(epoch) == (epoch == 4)
    assert best.epoch == 2 and torch.equal(best.weights["weight"], snapshots[2])
    restored = BestEpoch.from_state(best.to_state(), patience=2)
    assert restored.epoch == 2 and torch.equal(restored.weights["weight"], snapshots[2])


def test_in_memory_training_returns_the_best_epoch():
    rng = np.random.default_rng(0)
    lists = [np.sort(rng.choice(np.arange(10 * (u % 3), 10 * (u % 3) + 10), 6, replace=False)) for u in range(60)]
    validation = {"user_idx": np.arange(9), "fold_in": [l[:4] for l in lists[:9]], "targets": [l[4:] for l in lists[:9]]}
    knobs = Knobs(dims=(16, 4), epochs=6, batch_size=10, lr=0.02, weight_decay=1e-4, patience=2)
    history, best, model = train_in_memory(lists[9:], validation, 120, knobs)
    scores = [h["val_ndcg@100"] for h in history]
    assert best.epoch == 1 + int(np.argmax(scores)) and best.record["val_ndcg@100"] == max(scores)
    assert len(history) == knobs.epochs or len(history) == best.epoch + knobs.patience
    assert all(h["steps"] == 6 for h in history)  # 51 users, 10 per optimiser step
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best.weights[name]), name


def test_batch_size_counts_the_users_behind_one_optimiser_step_on_any_number_of_ranks():
    knobs = Knobs(batch_size=100)
    assert [knobs.rank_batch_size(w) for w in (1, 2, 3)] == [100, 50, 34]
    # 8,000 training users: 80 steps of 100 on one process or of 2 x 50; 3 ranks round up to 102 users a step.
    assert [knobs.steps_per_epoch(8000, w) for w in (1, 2, 3)] == [80, 80, 79]
    assert knobs.steps_per_epoch(5, 2) == 1
