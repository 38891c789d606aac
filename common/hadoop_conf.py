"""The Hadoop client configuration this process was pointed at (``HADOOP_CONF_DIR``)."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional


class HadoopConfError(RuntimeError):
    """No usable Hadoop client configuration."""


def default_fs(conf_dir: Optional[str] = None) -> str:
    """``fs.defaultFS`` from ``$HADOOP_CONF_DIR/core-site.xml``, e.g. ``hdfs://namenode:8020``."""
    conf_dir = conf_dir or os.environ.get("HADOOP_CONF_DIR")
    if not conf_dir:
        raise HadoopConfError("HADOOP_CONF_DIR is not set: it must name the cluster's client configuration "
                              "(core-site.xml, yarn-site.xml); `botify-minicluster` prints one for this host")
    core_site = Path(conf_dir) / "core-site.xml"
    try:
        root = ET.parse(core_site).getroot()
    except (OSError, ET.ParseError) as exc:
        raise HadoopConfError(f"cannot read {core_site}: {exc}") from exc
    for prop in root.iter("property"):
        if prop.findtext("name") == "fs.defaultFS":
            return (prop.findtext("value") or "").strip().rstrip("/")
    raise HadoopConfError(f"{core_site} sets no fs.defaultFS")
