"""Training a Mult-DAE / Mult-VAE: the knobs, one optimiser step, best-epoch keeping, and an in-memory loop.

``train_multidae``'s DDP rank function and ``tune_multidae``'s trials share
these pieces, so a configuration means the same thing in a sweep and in the
job. The paper's protocol (Liang et al. 2018): validation NDCG@100 after
every epoch, the best epoch's weights are the model; L2 on the weight
matrices; the VAE's KL weight grows linearly per optimiser step up to a cap.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from common.evaluation import evaluate_heldout, model_scorer
from common.model import MultiDAE, MultiDAEConfig, adam, l2_param_groups, model_loss, pad_batch

SELECT_BY = "val_ndcg@100"


@dataclass(frozen=True)
class Knobs:
    """The hyper-parameters of one training run (``multidae:`` in conf/pipeline.yml, or one sweep trial)."""

    variant: str = "dae"
    dims: Tuple[int, ...] = (300, 50)
    dropout: float = 0.5
    epochs: int = 10
    batch_size: int = 100
    lr: float = 0.01
    weight_decay: float = 0.0
    beta_cap: float = 0.2
    anneal_steps: int = 2000
    patience: int = 0
    seed: int = 98765

    @classmethod
    def from_settings(cls, settings: Mapping) -> "Knobs":
        """The knobs from a ``multidae`` section (profile applied) or a sweep row; other keys are ignored."""
        values = {}
        for f in fields(cls):
            if f.name in settings:
                kind = type(f.default)
                values[f.name] = tuple(int(d) for d in settings[f.name]) if kind is tuple else kind(settings[f.name])
        return cls(**values)

    def to_dict(self) -> Dict:
        data = asdict(self)
        data["dims"] = list(self.dims)
        return data

    def rank_batch_size(self, world_size: int) -> int:
        """Users per step on each of ``world_size`` ranks. ``batch_size`` is the users behind one optimiser
        update (DDP averages the ranks' gradients), on one process or many, so a sweep trial and the job
        with the same knobs take the same steps."""
        return max(1, math.ceil(self.batch_size / world_size))

    def steps_per_epoch(self, rows: int, world_size: int) -> int:
        """Optimiser steps that take each of ``rows`` training users about once on ``world_size`` ranks."""
        return max(1, math.ceil(rows / (self.rank_batch_size(world_size) * world_size)))

    def model_config(self, n_items: int) -> MultiDAEConfig:
        return MultiDAEConfig(n_items=n_items, dims=list(self.dims), dropout=self.dropout, variant=self.variant)

    def beta(self, step: int) -> float:
        """The VAE's KL weight after ``step`` optimiser updates (0 for a DAE)."""
        if self.variant != "vae":
            return 0.0
        return min(self.beta_cap, step / max(1, self.anneal_steps))


def with_profile(settings: Mapping) -> Dict:
    """The ``multidae`` section with its named profile (``profile``, a key of ``profiles``) laid over it.

    Applied once: the result names no profile, so applying it again changes nothing.
    """
    merged = copy.deepcopy(dict(settings))
    name = merged.get("profile")
    if name:
        profiles = merged.get("profiles") or {}
        if name not in profiles:
            raise ValueError(f"multidae.profile={name!r}: no such profile (known: {sorted(profiles)})")
        merged.update(copy.deepcopy(profiles[name]))
        merged["profile"] = None
    return merged


def load_training_config(name: str, overrides: Sequence[str]) -> Dict:
    """conf + ``multidae.profile`` laid over it + the other overrides, in that order: a command-line value beats the profile."""
    from common.config import apply_overrides, load_config

    chosen = [o for o in overrides if o.split("=", 1)[0].strip() == "multidae.profile"]
    config = load_config(name, chosen)
    config["multidae"] = with_profile(config["multidae"])
    return apply_overrides(config, [o for o in overrides if o not in chosen])


def make_optimizer(model: torch.nn.Module, knobs: Knobs) -> torch.optim.Adam:
    """Adam whose L2 penalty (``weight_decay``) applies to the weight matrices only."""
    return adam(l2_param_groups(model, knobs.weight_decay), knobs.lr)


def train_step(model: torch.nn.Module, optimizer, items: torch.Tensor, lengths: torch.Tensor, beta: float) -> float:
    """One optimiser update on a padded batch; returns the batch's loss (multinomial + beta x KL)."""
    loss, _ = model_loss(model, items, lengths, beta)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.item())


def cpu_weights(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@dataclass
class BestEpoch:
    """The epoch with the highest validation NDCG@100 so far, its record and weights; early stopping by ``patience``.

    With no validation users every epoch counts as an improvement (the last one is kept).
    """

    patience: int = 0
    epoch: int = 0
    record: Dict = field(default_factory=dict)
    weights: Optional[Dict[str, torch.Tensor]] = None

    def update(self, record: Dict, model: torch.nn.Module) -> bool:
        score, best = record.get(SELECT_BY), self.record.get(SELECT_BY)
        improved = self.weights is None or score is None or best is None or score > best
        if improved:
            self.epoch, self.record, self.weights = int(record["epoch"]), dict(record), cpu_weights(model)
        return improved

    def should_stop(self, epoch: int) -> bool:
        return self.patience > 0 and epoch - self.epoch >= self.patience

    def to_state(self) -> Dict:
        return {"epoch": self.epoch, "record": self.record, "weights": self.weights}

    @classmethod
    def from_state(cls, state: Optional[Dict], patience: int) -> "BestEpoch":
        if not state:
            return cls(patience)
        return cls(patience, int(state["epoch"]), dict(state["record"]), state["weights"])


def epoch_record(epoch: int, loss_sum: float, users: int, seconds: float, validation: Optional[Dict],
                 model: MultiDAE, eval_batch_size: int, device: str = "cpu") -> Dict:
    """One line of the training history: mean loss per user, time, and the validation figures."""
    record = {"epoch": epoch, "loss": loss_sum / max(users, 1), "epoch_seconds": seconds, "users_seen": users}
    if validation:
        figures = evaluate_heldout(model_scorer(model, device), validation, eval_batch_size)
        record.update({f"val_{k}": v for k, v in figures.items()})
    return record


def train_in_memory(train_lists: Sequence[np.ndarray], validation: Optional[Dict], n_items: int, knobs: Knobs,
                    eval_batch_size: int = 256) -> Tuple[List[Dict], BestEpoch, MultiDAE]:
    """Single-process training over item lists held in memory (a sweep trial, a bench run).

    Returns the history, the best epoch and the model holding the best epoch's weights.
    """
    torch.manual_seed(knobs.seed)
    rng = np.random.default_rng(knobs.seed)
    model = MultiDAE(knobs.model_config(n_items))
    optimizer = make_optimizer(model, knobs)
    best, history, step = BestEpoch(knobs.patience), [], 0
    for epoch in range(1, knobs.epochs + 1):
        model.train()
        started, loss_sum, steps_before = time.perf_counter(), 0.0, step
        order = rng.permutation(len(train_lists))
        for start in range(0, len(order), knobs.batch_size):
            chunk = [train_lists[i] for i in order[start : start + knobs.batch_size]]
            items, lengths = pad_batch(chunk)
            loss_sum += train_step(model, optimizer, items, lengths, knobs.beta(step)) * len(chunk)
            step += 1
        record = epoch_record(epoch, loss_sum, len(order), time.perf_counter() - started, validation, model, eval_batch_size)
        record["steps"] = step - steps_before
        history.append(record)
        best.update(record, model)
        if best.should_stop(epoch):
            break
    model.load_state_dict(best.weights)
    model.eval()
    return history, best, model
