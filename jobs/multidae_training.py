"""What each TorchDistributor rank runs: the DDP training loop over a petastorm shard.

``train_rank(spec)`` is shipped (cloudpickled) by TorchDistributor to every
rank, on the driver's machine (``local_mode=True``) or in barrier tasks on
executors (``local_mode=False``). Each rank reads its own shard of the
converter's Parquet cache; ragged item lists become fixed-width padded arrays
plus lengths in a petastorm ``TransformSpec``. Every rank runs the same number
of steps per epoch (the loader repeats forever), so DDP's all-reduce never
waits on a rank that ran out of rows.

Rank 0 evaluates the validation users after every epoch and writes a
checkpoint (``last.pt``: weights, optimizer, history) to the version's work
directory; a restarted run resumes from it.
"""
from __future__ import annotations

import io
import logging
import math
import os
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from common.model import MultiDAE, MultiDAEConfig, adam, multinomial_loss, pad_batch
from common.ranking_metrics import rank_excluding, summarize
from common.storage import FsspecStorage, join

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"


class PadItems:
    """petastorm transform: ``items`` (ragged int list) -> ``items`` int64[width] zero-padded, ``n`` its length."""

    def __init__(self, width: int):
        self.width = int(width)

    def __call__(self, pdf: pd.DataFrame) -> pd.DataFrame:
        padded = np.zeros((len(pdf), self.width), dtype=np.int64)
        lengths = np.zeros(len(pdf), dtype=np.int32)
        for row, ids in enumerate(pdf["items"]):
            n = len(ids)
            if n > self.width:
                raise ValueError(f"a user has {n} items, more than the padded width {self.width}")
            padded[row, :n] = ids
            lengths[row] = n
        return pd.DataFrame({"items": list(padded), "n": lengths})

    def spec(self):
        from petastorm import TransformSpec

        return TransformSpec(
            self,
            edit_fields=[("items", np.int64, (self.width,), False), ("n", np.int32, (), False)],
            selected_fields=["items", "n"],
        )


# ---- scoring and held-out evaluation (also used by the driver and evaluate_offline) ----------


def model_scorer(model: MultiDAE, device: str = "cpu") -> Callable:
    """Scores (logits) for a batch of users given their fold-in item lists, in eval mode."""

    def score(item_lists: Sequence[np.ndarray], user_idx: Optional[np.ndarray] = None) -> np.ndarray:
        model.eval()
        items, lengths = pad_batch(item_lists)
        with torch.no_grad():
            return model(items.to(device), lengths.to(device)).float().cpu().numpy()

    return score


def evaluate_heldout(score_fn: Callable, heldout: Dict, batch_size: int = 256) -> Dict[str, float]:
    """Mean NDCG@100, Recall@20, Recall@50 over held-out users; fold-in items are never ranked.

    ``score_fn(fold_in_lists, user_idx)`` returns scores ``[users, n_items]``.
    """
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


# ---- checkpoint bytes (plain tensors and containers only: loaded with weights_only=True) -------


def to_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes):
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


# ---- the per-rank function ------------------------------------------------------------------


def _threads(requested: int) -> int:
    if requested and requested > 0:
        return int(requested)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, (os.cpu_count() or 1) // local)


def train_rank(spec: Dict) -> Optional[Dict]:
    """Train for ``spec['epochs']`` epochs (resuming from ``last.pt`` if present); rank 0 checkpoints each epoch."""
    warnings.filterwarnings("ignore", category=FutureWarning, module="petastorm")  # pyarrow legacy-API notices
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s rank%(rank)s: %(message)s".replace("%(rank)s", os.environ.get("RANK", "?")))
    use_gpu = bool(spec["use_gpu"])
    dist.init_process_group("nccl" if use_gpu else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if use_gpu else "cpu"
    if use_gpu:
        torch.cuda.set_device(device)
    torch.set_num_threads(_threads(spec["threads_per_process"]))
    torch.manual_seed(int(spec["seed"]))

    storage = FsspecStorage()
    checkpoint_uri = join(spec["work_uri"], LAST_CHECKPOINT)
    config = MultiDAEConfig.from_dict(spec["model"])
    model = MultiDAE(config)
    optimizer_state, history, start_epoch = None, [], 0
    if storage.exists(checkpoint_uri):
        state = from_bytes(storage.read_bytes(checkpoint_uri))
        if state["model_config"] != config.to_dict():
            raise ValueError(f"{checkpoint_uri} was trained with {state['model_config']}, not {config.to_dict()}: use another --version")
        model.load_state_dict(state["model"])
        optimizer_state, history, start_epoch = state["optimizer"], list(state["history"]), int(state["epoch"])
        if rank == 0:
            log.info("resuming from %s after epoch %d", checkpoint_uri, start_epoch)
    model.to(device)
    # Gradients live in DDP's all-reduce buckets: no 120 MB copy in and out of them per step.
    ddp = DDP(model, device_ids=[int(device.split(":")[1])] if use_gpu else None, gradient_as_bucket_view=True)
    optimizer = adam(ddp.parameters(), float(spec["lr"]), float(spec["weight_decay"]))
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)

    steps = int(spec["steps_per_epoch"])
    converter = spec["converter"]
    pad = PadItems(spec["width"])
    with converter.make_torch_dataloader(
        batch_size=int(spec["batch_size"]),
        num_epochs=None,
        cur_shard=rank,
        shard_count=world,
        transform_spec=pad.spec(),
        workers_count=int(spec["reader_workers"]),
        shuffling_queue_capacity=int(spec["shuffle_buffer"]),
        seed=int(spec["seed"]) + rank,
    ) as loader:
        batches = iter(loader)
        for epoch in range(start_epoch, int(spec["epochs"])):
            ddp.train()
            started = time.perf_counter()
            totals = torch.zeros(2, dtype=torch.float64, device=device)
            waited = 0.0  # time blocked on petastorm: tells an input-bound epoch from a compute-bound one
            for _ in range(steps):
                asked = time.perf_counter()
                batch = next(batches)
                waited += time.perf_counter() - asked
                lengths = batch["n"].long()
                # Rows are padded to the longest user in the data set; this batch needs only its own longest.
                items = batch["items"][:, : max(1, int(lengths.max()))].to(device)
                lengths = lengths.to(device)
                loss = multinomial_loss(ddp(items, lengths), items, lengths)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                totals += torch.tensor([loss.item() * len(lengths), len(lengths)], dtype=torch.float64, device=device)
            dist.all_reduce(totals)
            totals = totals.cpu()
            epoch_time = time.perf_counter() - started
            if rank == 0:
                record = {"epoch": epoch + 1, "loss": float(totals[0] / max(totals[1], 1)), "epoch_seconds": epoch_time,
                          "users_seen": int(totals[1]), "input_wait_seconds": waited}
                record.update({f"val_{k}": v for k, v in evaluate_heldout(model_scorer(model, device), spec["validation"], int(spec["eval_batch_size"])).items()})
                history.append(record)
                log.info("epoch %d/%d loss %.3f val ndcg@100 %s (%.1fs, %.1fs waiting for input)", epoch + 1, spec["epochs"],
                         record["loss"], "%.4f" % record["val_ndcg@100"] if "val_ndcg@100" in record else "n/a", epoch_time, waited)
                state = {"epoch": epoch + 1, "model_config": config.to_dict(),
                         "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                         "optimizer": optimizer.state_dict(), "history": history}
                storage.write_atomically(checkpoint_uri, to_bytes(state))
            dist.barrier()
    dist.destroy_process_group()
    # Every rank returns the same kind of answer: in local mode TorchDistributor keeps whichever rank
    # wrote last. The history travels in last.pt. Where the rank ran (the driver's machine or an
    # executor's working directory) shows which launch path was used.
    return {"world_size": world, "process": {"cwd": os.getcwd(), "executable": sys.executable}}


# The rank function and what it uses travel by value: torchrun's child processes on an executor
# import only installed packages, not the --py-files zip that the executor's own Python worker sees.
SHIPPED_BY_VALUE = ("jobs.multidae_training", "common.model", "common.ranking_metrics", "common.storage")


def ship_by_value():
    """Context manager: pickle this module and its project dependencies by value while it is active."""
    import contextlib
    import importlib

    from pyspark import cloudpickle

    @contextlib.contextmanager
    def registered():
        modules = [importlib.import_module(name) for name in SHIPPED_BY_VALUE]
        for module in modules:
            cloudpickle.register_pickle_by_value(module)
        try:
            yield
        finally:
            for module in modules:
                cloudpickle.unregister_pickle_by_value(module)

    return registered()


def steps_per_epoch(rows: int, batch_size: int, world_size: int) -> int:
    return max(1, math.ceil(rows / (batch_size * world_size)))
