"""Publishing a recommendations version: the contract botify loads (docs/design.md), written in one place.

Every job that produces users' lists (infer_recommendations for the MultiDAE,
train_als) hands ``publish`` a DataFrame of ``(user, tracks)`` and gets
``<root>/recommendations/<version>/``: ``parquet/``, ``json/part-*.json``
(``{"user", "tracks"}``), ``top_tracks.json``, ``_MANIFEST.json`` (row count,
JSON part files and checksums, plus the job's own fields) and ``_SUCCESS``,
written atomically; then the set's pointer (``LATEST`` for the MultiDAE,
``LATEST-als`` for ALS) names the version, unless serving is held
(common.serving_control). botify checks a version against exactly these
fields before serving it.
"""
from __future__ import annotations

import logging
import posixpath
from typing import Any, Dict

from pyspark.sql import DataFrame

from common.manifest import sha256, write_manifest
from common.paths import resolve
from common import serving_control
from common.storage import Storage, atomic_output, join

log = logging.getLogger(__name__)


def publish(storage: Storage, config: Dict, recs: DataFrame, top_json: bytes, version: str,
            fields: Dict[str, Any], pointer: str = "LATEST") -> Dict[str, Any]:
    """Write ``recs`` (user, tracks: best first) as recommendations/``version`` and move ``pointer`` to it.

    ``fields`` (model_version, interactions_run, ...) go into the manifest
    beside the fields botify checks. Returns the manifest.
    """
    spark = recs.sparkSession
    root = resolve(config, "recommendations")
    final = join(root, version)
    with atomic_output(storage, final) as tmp:
        recs.select("user", "tracks").write.mode("overwrite").parquet(join(tmp, "parquet"))
        # JSON is written from the Parquet copy so both hold exactly the same rows without computing them twice.
        spark.read.parquet(join(tmp, "parquet")).write.mode("overwrite").json(join(tmp, "json"))
        json_files = [u for u in storage.list(join(tmp, "json"))
                      if posixpath.basename(u).startswith("part-") and u.endswith(".json")]
        json_bytes = b"".join(storage.read_bytes(u) for u in json_files)
        row_count = sum(1 for line in json_bytes.splitlines() if line.strip())
        storage.write_bytes(join(tmp, "top_tracks.json"), top_json)
        manifest = write_manifest(storage, tmp, {
            **fields,
            "row_count": row_count,
            "json_files": sorted("json/" + posixpath.basename(u) for u in json_files),
            "json_sha256": sha256(json_bytes),
            "top_tracks_sha256": sha256(top_json),
        })
    if serving_control.move_pointer(storage, root, pointer, version):
        log.info("recommendations %s: %d users (%s now names it)", final, row_count, pointer)
    else:
        log.warning("recommendations %s: %d users written; serving is held (%s), so %s was not moved",
                    final, row_count, join(root, serving_control.HOLD), pointer)
    return manifest
