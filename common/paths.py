"""Where things live under the storage root (docs/design.md "Storage root and layout")."""
from __future__ import annotations

import os
from urllib.parse import urlparse

from common.storage import join, to_uri


def root_uri(config: dict) -> str:
    return to_uri(config["storage"]["root"])


def resolve(config: dict, path: str) -> str:
    """A URI for ``path``: URIs and absolute paths as given, anything else relative to the storage root."""
    text = str(path)
    if "://" in text and urlparse(text).scheme:
        return text
    if os.path.isabs(text):
        return to_uri(text)
    return join(root_uri(config), text) if text else root_uri(config)
