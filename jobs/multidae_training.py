"""What each TorchDistributor rank runs: the DDP training loop over a petastorm shard.

``train_rank(spec)`` is shipped (cloudpickled) by TorchDistributor to every
rank, on the driver's machine (``local_mode=True``) or in barrier tasks on
executors (``local_mode=False``). Each rank reads its own shard of the
converter's Parquet cache; ragged item lists become fixed-width padded arrays
plus lengths in a petastorm ``TransformSpec``. Every rank runs the same number
of steps per epoch (the loader repeats forever), so DDP's all-reduce never
waits on a rank that ran out of rows.

Rank 0 evaluates the validation users after every epoch, keeps the best
epoch's weights (validation NDCG@100) and writes a checkpoint (``last.pt``:
weights, optimizer, history, optimiser step count, best epoch) to the
version's work directory; a restarted run resumes from it, best so far
included. With ``patience`` rank 0 stops every rank once that many epochs
passed without a better one.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import pandas as pd
import torch

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from common.checkpoint import from_bytes, to_bytes
from common.petastorm_hdfs import install as read_hdfs_with_hdfs_native
from common.model import MultiDAE
from common.storage import FsspecStorage, join
from common.training import BestEpoch, Knobs, cpu_weights, epoch_record, make_optimizer, train_step

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


@dataclass(frozen=True)
class TrainingSpec:
    """Everything a rank needs, built by the driver (train_multidae) and shipped to every rank."""

    converter: object  # petastorm SparkDatasetConverter (or anything with its make_torch_dataloader)
    width: int  # longest user's item count: the padded row width
    n_items: int
    knobs: Knobs
    steps_per_epoch: int
    validation: Dict  # held-out validation users (common.heldout_split.collect_heldout)
    work_uri: str  # where last.pt lives
    use_gpu: bool = False
    threads_per_process: int = 0
    reader_workers: int = 2
    shuffle_buffer: int = 2000
    eval_batch_size: int = 256
    launched_at: float = 0.0  # the driver's time.time() as it started the ranks (each rank logs its start-up from it)


# ---- the per-rank function ------------------------------------------------------------------


def _threads(requested: int) -> int:
    if requested and requested > 0:
        return int(requested)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, (os.cpu_count() or 1) // local)


def _start_rank(spec: TrainingSpec) -> Tuple[int, int, str]:
    """Join the process group; (rank, world size, device)."""
    warnings.filterwarnings("ignore", category=FutureWarning, module="petastorm")  # pyarrow legacy-API notices
    read_hdfs_with_hdfs_native()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s rank{os.environ.get('RANK', '?')}: %(message)s")
    dist.init_process_group("nccl" if spec.use_gpu else "gloo")
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if spec.use_gpu else "cpu"
    if spec.use_gpu:
        torch.cuda.set_device(device)
    torch.set_num_threads(_threads(spec.threads_per_process))
    torch.manual_seed(spec.knobs.seed)
    return dist.get_rank(), dist.get_world_size(), device


def _restore(spec: TrainingSpec, model: MultiDAE) -> Dict:
    """The resumable state of ``last.pt`` (weights loaded into ``model``), or a fresh start."""
    storage = FsspecStorage()
    checkpoint_uri = join(spec.work_uri, LAST_CHECKPOINT)
    if not storage.exists(checkpoint_uri):
        return {"epoch": 0, "step": 0, "history": [], "optimizer": None, "best": None}
    state = from_bytes(storage.read_bytes(checkpoint_uri))
    if state["model_config"] != model.config.to_dict():
        raise ValueError(f"{checkpoint_uri} was trained with {state['model_config']}, not {model.config.to_dict()}: use another --version")
    model.load_state_dict(state["model"])
    log.info("resuming from %s after epoch %d", checkpoint_uri, int(state["epoch"]))
    return {"epoch": int(state["epoch"]), "step": int(state.get("step", 0)), "history": list(state["history"]),
            "optimizer": state["optimizer"], "best": state.get("best")}


def _run_epoch(spec: TrainingSpec, ddp, optimizer, batches, step: int, device: str) -> Tuple[torch.Tensor, float, int]:
    """``steps_per_epoch`` updates; (loss sum and users over all ranks, seconds blocked on input, optimiser step)."""
    ddp.train()
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    waited = 0.0  # time blocked on petastorm: tells an input-bound epoch from a compute-bound one
    for _ in range(spec.steps_per_epoch):
        asked = time.perf_counter()
        batch = next(batches)
        waited += time.perf_counter() - asked
        lengths = batch["n"].long()
        # Rows are padded to the longest user in the data set; this batch needs only its own longest.
        items = batch["items"][:, : max(1, int(lengths.max()))].to(device)
        loss = train_step(ddp, optimizer, items, lengths.to(device), spec.knobs.beta(step))
        step += 1
        totals += torch.tensor([loss * len(lengths), len(lengths)], dtype=torch.float64, device=device)
    dist.all_reduce(totals)
    return totals.cpu(), waited, step


def _end_epoch(spec: TrainingSpec, model: MultiDAE, optimizer, state: Dict, best: BestEpoch, record: Dict) -> bool:
    """Rank 0: validate, keep the best epoch, checkpoint; True when early stopping says stop."""
    started = time.perf_counter()
    record.update(epoch_record(record["epoch"], record.pop("loss_sum"), record["users_seen"], record["epoch_seconds"],
                               spec.validation, model, spec.eval_batch_size, next(model.parameters()).device.type))
    state["history"].append(record)
    improved = best.update(record, model)
    log.info("epoch %d/%d loss %.3f val ndcg@100 %s%s (%.1fs, %.1fs waiting for input)", record["epoch"], spec.knobs.epochs,
             record["loss"], "%.4f" % record["val_ndcg@100"] if "val_ndcg@100" in record else "n/a",
             " (best)" if improved else f" (best: epoch {best.epoch})", record["epoch_seconds"], record["input_wait_seconds"])
    # An improved epoch's weights are the best ones: the same tensors twice are saved once
    # (at 50,000 items a 965 MB checkpoint becomes 724 MB: 5.2 s -> 3.1 s per epoch on the loaded 2 cores).
    checkpoint = {"epoch": record["epoch"], "step": state["step"], "model_config": model.config.to_dict(),
                  "model": best.weights if improved else cpu_weights(model), "optimizer": optimizer.state_dict(),
                  "history": state["history"], "best": best.to_state()}
    validated = time.perf_counter()
    FsspecStorage().write_atomically(join(spec.work_uri, LAST_CHECKPOINT), to_bytes(checkpoint))
    log.info("epoch %d: %.1fs validation, %.1fs checkpoint", record["epoch"], validated - started,
             time.perf_counter() - validated)
    return best.should_stop(record["epoch"])


def _stop_everywhere(stop: bool, device: str) -> bool:
    """Rank 0's early-stopping decision, on every rank (all ranks must run the same number of steps)."""
    flag = torch.tensor([1 if stop else 0], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def train_rank(spec: TrainingSpec) -> Optional[Dict]:
    """Train for ``spec.knobs.epochs`` epochs (resuming from ``last.pt`` if present); rank 0 checkpoints each epoch."""
    entered = time.time()
    rank, world, device = _start_rank(spec)
    joined = time.time()
    model = MultiDAE(spec.knobs.model_config(spec.n_items))
    state = _restore(spec, model)
    best = BestEpoch.from_state(state["best"], spec.knobs.patience)
    model.to(device)
    # Gradients live in DDP's all-reduce buckets: no 120 MB copy in and out of them per step.
    ddp = DDP(model, device_ids=[int(device.split(":")[1])] if spec.use_gpu else None, gradient_as_bucket_view=True)
    optimizer = make_optimizer(ddp.module, spec.knobs)
    if state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    stopped = best.should_stop(state["epoch"]) if state["epoch"] else False
    with spec.converter.make_torch_dataloader(
        batch_size=spec.knobs.rank_batch_size(world), num_epochs=None, cur_shard=rank, shard_count=world,
        transform_spec=PadItems(spec.width).spec(), workers_count=spec.reader_workers,
        shuffling_queue_capacity=spec.shuffle_buffer, seed=spec.knobs.seed + rank,
    ) as loader:
        batches = iter(loader)
        log.info("rank %d start-up: %.1fs from launch to the rank function (torchrun, imports, unpickling the spec), "
                 "%.1fs joining the process group, %.1fs model and data loader", rank,
                 entered - spec.launched_at if spec.launched_at else float("nan"), joined - entered, time.time() - joined)
        for epoch in range(state["epoch"] + 1, spec.knobs.epochs + 1):
            if stopped:
                break
            started = time.perf_counter()
            totals, waited, state["step"] = _run_epoch(spec, ddp, optimizer, batches, state["step"], device)
            stop = False
            if rank == 0:
                record = {"epoch": epoch, "loss_sum": float(totals[0]), "users_seen": int(totals[1]),
                          "steps": spec.steps_per_epoch,
                          "epoch_seconds": time.perf_counter() - started, "input_wait_seconds": waited}
                stop = _end_epoch(spec, model, optimizer, state, best, record)
            stopped = _stop_everywhere(stop, device)
            dist.barrier()
        trained = time.time()
    closed = time.time()
    dist.destroy_process_group()
    log.info("rank %d shut-down: %.1fs closing the data loader, %.1fs leaving the process group", rank, closed - trained,
             time.time() - closed)
    # Every rank returns the same kind of answer: in local mode TorchDistributor keeps whichever rank
    # wrote last. The history travels in last.pt. Where the rank ran (the driver's machine or an
    # executor's working directory) shows which launch path was used.
    _exit_without_teardown()
    return {"world_size": world, "process": {"cwd": os.getcwd(), "executable": sys.executable}}


def _exit_without_teardown() -> None:
    """Once the rank's answer is written, end the process at once instead of tearing the interpreter down.

    TorchDistributor's rank script writes what train_rank returns, then the
    interpreter exits; unloading torch, pyarrow and petastorm's pools took
    ~4 s per launch on 2 loaded cores (a bare torchrun of two ranks: 5.7 s from
    the ranks' last line to torchrun's exit, 1.4 s with this). Registered last,
    this atexit hook runs first; everything the job needs is written by then.
    A rank that fails never gets here and exits with its error; called outside
    torchrun (a bench calling train_rank in its own process) it does nothing.
    """
    import atexit

    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return

    def leave() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    atexit.register(leave)


# The rank function and what it uses travel by value: torchrun's child processes on an executor
# import only installed packages, not the --py-files zip that the executor's own Python worker sees.
SHIPPED_BY_VALUE = ("jobs.multidae_training", "common.petastorm_hdfs", "common.training", "common.evaluation", "common.checkpoint", "common.model",
                    "common.ranking_metrics", "common.storage", "common.manifest", "common.paths")


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

