"""Config overrides, storage back ends and atomic outputs (through the URI code used on HDFS)."""
import json

import pytest

from common import config, storage
from common.manifest import read_manifest, write_manifest
from common.paths import resolve


def test_overrides_are_typed_and_checked():
    base = {"extract": {"threshold": 0.8, "dedupe": True}, "spark": {"conf": {}}}
    got = config.apply_overrides(base, ["extract.threshold=0.9", "extract.dedupe=false",
                                        "spark.conf.spark.sql.shuffle.partitions=4"])
    assert got["extract"] == {"threshold": 0.9, "dedupe": False}
    assert got["spark"]["conf"] == {"spark.sql.shuffle.partitions": 4}
    assert base["extract"]["threshold"] == 0.8  # the input is not modified
    with pytest.raises(config.ConfigError, match="unknown configuration key"):
        config.apply_overrides(base, ["extract.treshold=0.9"])
    with pytest.raises(config.ConfigError, match="key.path=value"):
        config.apply_overrides(base, ["extract.threshold"])


def test_pipeline_conf_loads_and_resolves_paths(tmp_path):
    cfg = config.load_config("pipeline.yml", [f"storage.root={tmp_path}"])
    assert resolve(cfg, "logs/train") == f"file://{tmp_path}/logs/train"
    assert resolve(cfg, "hdfs:///data/x") == "hdfs:///data/x"
    assert resolve(cfg, "/abs/path") == "file:///abs/path"
    cfg = config.load_config("pipeline.yml", ["storage.root=hdfs:///user/me/botify"])
    assert resolve(cfg, "interactions") == "hdfs:///user/me/botify/interactions"


def test_missing_conf_file_is_a_clear_error():
    with pytest.raises(config.ConfigError, match="nope.yml"):
        config.load_config("nope.yml")


@pytest.fixture(params=["hadoop", "fsspec"])
def backend(request, spark):
    return storage.HadoopStorage(spark) if request.param == "hadoop" else storage.FsspecStorage()


def test_storage_roundtrip(backend, warehouse):
    uri = storage.join(warehouse, "a", "b.txt")
    backend.write_text(uri, "hello")
    assert backend.exists(uri)
    assert backend.read_text(uri) == "hello"
    assert storage.join(warehouse, "a", "b.txt") in backend.list(storage.join(warehouse, "a"))
    backend.rename(uri, storage.join(warehouse, "c", "d.txt"))
    assert not backend.exists(uri)
    backend.delete(storage.join(warehouse, "c"))
    assert not backend.exists(storage.join(warehouse, "c", "d.txt"))


def test_atomic_output_replaces_and_survives_failure(backend, warehouse):
    final = storage.join(warehouse, "out", "run1")
    with storage.atomic_output(backend, final) as tmp:
        backend.write_text(storage.join(tmp, "data.txt"), "v1")
        assert not backend.exists(final)  # nothing visible before completion
    assert backend.read_text(storage.join(final, "data.txt")) == "v1"
    assert backend.exists(storage.join(final, storage.SUCCESS))

    with pytest.raises(RuntimeError):
        with storage.atomic_output(backend, final) as tmp:
            backend.write_text(storage.join(tmp, "data.txt"), "half")
            raise RuntimeError("job died")
    assert backend.read_text(storage.join(final, "data.txt")) == "v1"

    with storage.atomic_output(backend, final) as tmp:
        backend.write_text(storage.join(tmp, "other.txt"), "v2")
    assert not backend.exists(storage.join(final, "data.txt"))  # replaced, not merged
    assert backend.read_text(storage.join(final, "other.txt")) == "v2"
    leftovers = [u for u in backend.list(storage.join(warehouse, "out")) if "_tmp-" in u or "_old-" in u]
    assert leftovers == []


def test_pointer_and_manifest(backend, warehouse):
    pointer = storage.join(warehouse, "LATEST")
    storage.write_pointer(backend, pointer, "v1")
    storage.write_pointer(backend, pointer, "v2")
    assert storage.read_pointer(backend, pointer) == "v2"
    backend.write_text(pointer, "../etc")
    with pytest.raises(ValueError, match="invalid version"):
        storage.read_pointer(backend, pointer)
    write_manifest(backend, warehouse, {"row_count": 3})
    assert read_manifest(backend, warehouse)["row_count"] == 3
    backend.write_text(storage.join(warehouse, "_MANIFEST.json"), "{trunc")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_manifest(backend, warehouse)


@pytest.mark.slow
def test_a_local_file_rewritten_without_a_jvm_still_reads_through_hadoop(spark, warehouse):
    """Hadoop keeps a .<name>.crc beside each local file it writes; fsspec replacing the file must not leave the
    old one behind, or Hadoop's next read fails with a ChecksumException (retention rewriting _STAGED.json)."""
    hadoop, plain = storage.HadoopStorage(spark), storage.FsspecStorage()
    uri = storage.join(warehouse, "events", "_STAGED.json")
    hadoop.write_atomically(uri, json.dumps({"dates": list(range(400))}).encode())
    assert hadoop.read_text(uri).startswith('{"dates"')
    plain.write_atomically(uri, json.dumps({"dates": list(range(300))}).encode())
    assert json.loads(hadoop.read_text(uri)) == {"dates": list(range(300))}
    plain.write_bytes(uri, b'{"dates": []}')
    assert hadoop.read_text(uri) == '{"dates": []}'
