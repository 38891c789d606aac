"""Mult-DAE and Mult-VAE (Liang et al., "Variational Autoencoders for Collaborative Filtering", 2018).

A user is the set of items they liked. The binary row is L2-normalised, items
are dropped out (denoising), and an MLP with tanh maps it through a bottleneck
back to one logit per item; training maximises the multinomial log-likelihood
of the user's items under softmax(logits). Mult-VAE makes the bottleneck a
Gaussian (mean and log-variance), samples it while training and adds
``beta`` x the KL divergence to a standard normal to the loss.

The first layer never sees a dense ``n_items``-wide input: a padded batch of
item ids goes through ``EmbeddingBag(mode="sum")`` with per-sample weights
(normalisation and dropout mask folded into the weights), which is the same
product as ``Linear`` on the dense row at the cost of the user's item count.
The output layer is dense: a score for every item is what recommendation needs.

The training loop lives in common/training.py; this module is the network only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("dae", "vae")


@dataclass
class MultiDAEConfig:
    n_items: int
    dims: List[int] = field(default_factory=lambda: [300, 50])  # encoder after the input; decoder mirrors it
    dropout: float = 0.5
    variant: str = "dae"  # "vae": the last of ``dims`` is a Gaussian latent (mean and log-variance)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MultiDAEConfig":
        # Checkpoints written before the VAE existed have no "variant": they are DAEs.
        return cls(n_items=int(data["n_items"]), dims=[int(d) for d in data["dims"]], dropout=float(data["dropout"]),
                   variant=str(data.get("variant", "dae")))


class MultiDAE(nn.Module):
    def __init__(self, config: MultiDAEConfig):
        super().__init__()
        if config.n_items < 1 or not config.dims or config.variant not in VARIANTS:
            raise ValueError(f"bad MultiDAE config {config}")
        if config.variant == "vae" and len(config.dims) < 2:
            raise ValueError(f"a Mult-VAE needs a hidden layer before the latent: dims={config.dims}")
        self.config = config
        encoder = [*config.dims]
        if config.variant == "vae":
            encoder[-1] *= 2  # the encoder's last layer emits mean and log-variance
        decoder = [*reversed(config.dims[:-1]), config.n_items]
        self.input = nn.EmbeddingBag(config.n_items, encoder[0], mode="sum")
        self.input_bias = nn.Parameter(torch.zeros(encoder[0]))
        pairs = list(zip(encoder[:-1], encoder[1:])) + list(zip([config.dims[-1], *decoder[:-1]], decoder))
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.n_encoder = len(encoder) - 1  # Linear layers after the input that belong to the encoder
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Xavier-uniform weights, as in the paper's code (the input layer is a Linear in disguise).
        nn.init.xavier_uniform_(self.input.weight)
        nn.init.normal_(self.input_bias, std=0.001)
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)

    def input_weights(self, lengths: torch.Tensor, width: int) -> torch.Tensor:
        """Per-sample weights of a padded batch: 1/sqrt(n) for real items (L2 norm of a binary row), 0 for padding.

        In training mode each item survives dropout with probability 1-p and is
        scaled by 1/(1-p), like ``F.dropout`` applied to the normalised row.
        """
        positions = torch.arange(width, device=lengths.device).unsqueeze(0)
        present = (positions < lengths.unsqueeze(1)).float()
        weights = present / lengths.clamp(min=1).float().sqrt().unsqueeze(1)
        if self.training and self.config.dropout > 0:
            weights = F.dropout(weights, p=self.config.dropout, training=True)
        return weights

    def encode(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The encoder's last activation: the code (DAE, after tanh) or [mean, log-variance] (VAE, linear)."""
        weights = self.input_weights(lengths, items.shape[1])
        h = torch.tanh(self.input(items, per_sample_weights=weights) + self.input_bias)
        for i in range(self.n_encoder):
            h = self.layers[i](h)
            if self.config.variant == "dae" or i < self.n_encoder - 1:
                h = torch.tanh(h)
        return h

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        decoder = self.layers[self.n_encoder:]
        for i, layer in enumerate(decoder):
            z = layer(z)
            if i < len(decoder) - 1:
                z = torch.tanh(z)
        return z

    def forward(self, items: torch.Tensor, lengths: torch.Tensor, with_kl: bool = False):
        """Logits ``[batch, n_items]`` for padded item ids ``[batch, width]`` with ``lengths`` real ids per row.

        ``with_kl``: ``(logits, kl)``, kl the batch mean of KL(q(z|x) || N(0, I)) (0 for a DAE). A VAE
        samples its latent in training mode and uses the mean in eval mode.
        """
        h = self.encode(items, lengths)
        kl = h.new_zeros(())
        if self.config.variant == "vae":
            mu, logvar = h.chunk(2, dim=1)
            h = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
            kl = gaussian_kl(mu, logvar)
        logits = self.decode(h)
        return (logits, kl) if with_kl else logits


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(N(mu, exp(logvar)) || N(0, I)) = 0.5 sum(exp(logvar) + mu^2 - 1 - logvar)."""
    return (0.5 * (torch.exp(logvar) + mu.pow(2) - 1.0 - logvar).sum(dim=1)).mean()


def multinomial_loss(logits: torch.Tensor, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over users of -sum_{i in user} log softmax(logits)_i (the multinomial log-likelihood)."""
    log_probs = F.log_softmax(logits, dim=1)
    picked = log_probs.gather(1, items)
    present = torch.arange(items.shape[1], device=items.device).unsqueeze(0) < lengths.unsqueeze(1)
    return -(picked * present).sum(dim=1).mean()


def model_loss(model: nn.Module, items: torch.Tensor, lengths: torch.Tensor, beta: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(loss to minimise, its multinomial part): the VAE's is multinomial + beta x KL, the DAE's the multinomial alone.

    ``model`` may be the DDP wrapper: the forward pass must go through it for the gradient all-reduce.
    """
    logits, kl = model(items, lengths, with_kl=True)
    nll = multinomial_loss(logits, items, lengths)
    return nll + beta * kl, nll


def adam(parameters, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with the fused kernel: the same update, but one pass over the 30M parameters instead of a
    dozen elementwise ops per tensor; on CPU that took the step from ~0.4 s to ~0.05 s (a third of a
    training step became a tenth; docs/benchmarks.md). ``parameters`` may be param groups."""
    return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, fused=True)


def l2_param_groups(model: nn.Module, weight_decay: float) -> List[dict]:
    """Weight matrices decay (the paper's L2 on the weights), biases do not."""
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    others = [p for name, p in model.named_parameters() if not name.endswith("weight")]
    return [{"params": weights, "weight_decay": float(weight_decay)}, {"params": others, "weight_decay": 0.0}]


def pad_batch(item_lists: Sequence[Sequence[int]], width: Optional[int] = None):
    """Padded ``int64 [batch, width]`` ids and ``lengths`` from ragged lists (padding id 0, weight 0)."""
    lengths = torch.tensor([len(x) for x in item_lists], dtype=torch.int64)
    width = max(1, int(lengths.max()) if len(item_lists) else 1) if width is None else width
    items = torch.zeros((len(item_lists), width), dtype=torch.int64)
    for row, ids in enumerate(item_lists):
        if len(ids):
            items[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.int64)
    return items, lengths
