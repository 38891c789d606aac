"""Model checkpoints: bytes in and out, published model versions, and the model they hold.

A checkpoint holds plain tensors and containers only, so it is loaded with
``weights_only=True`` (never an arbitrary unpickle). A published version lives
in ``<root>/models/multidae/<version>/model.pt`` next to a manifest whose
``model_sha256`` it must match.
"""
from __future__ import annotations

import io
from typing import Dict, Optional, Tuple
from urllib.parse import urlparse

import torch

from common.manifest import read_manifest, sha256
from common.model import MultiDAE, MultiDAEConfig
from common.paths import resolve
from common.storage import FsspecStorage, join, read_pointer

MODEL_FILE = "model.pt"
CHECKPOINT_FORMAT = "botify-multidae/1"


def to_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes):
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def blob_storage(storage, uri: str):
    """Where to move model-sized bytes: local files and HDFS directly (fsspec), anything else through ``storage``.

    ``HadoopStorage`` copies bytes through py4j into the driver's JVM heap, which
    costs seconds per 100 MB and, on YARN, a 1 GiB driver its heap: reading the
    default-scale ``last.pt`` (weights and Adam's moments, ~0.5 GB) that way ended
    in ``OutOfMemoryError``. ``file://`` and ``hdfs://`` (hdfs-native) are
    reachable without the JVM.
    """
    return FsspecStorage() if urlparse(uri).scheme in ("file", "hdfs", "viewfs") else storage


def model_dir(config: Dict, version: str) -> str:
    return join(resolve(config, "models/multidae"), version)


def read_model(storage, config: Dict, version: Optional[str]) -> Tuple[str, bytes]:
    """(version, model.pt bytes) of a published model, checked against its manifest; ``None``/``LATEST`` follows the pointer."""
    base = resolve(config, "models/multidae")
    if not version or version == "LATEST":
        version = read_pointer(storage, join(base, "LATEST"))
    uri = join(base, version, MODEL_FILE)
    data = blob_storage(storage, uri).read_bytes(uri)
    manifest = read_manifest(storage, join(base, version))
    if manifest.get("model_sha256") != sha256(data):
        raise ValueError(f"{uri} does not match its manifest checksum")
    return version, data


def load_checkpoint(storage, config: Dict, version: Optional[str]) -> Tuple[str, Dict]:
    """(version, checkpoint dict) of a published model."""
    version, data = read_model(storage, config, version)
    checkpoint = from_bytes(data)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"model {version}: not a {CHECKPOINT_FORMAT} checkpoint")
    return version, checkpoint


def model_from_checkpoint(checkpoint: Dict) -> MultiDAE:
    model = MultiDAE(MultiDAEConfig.from_dict(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return model
