"""Where vaelab keeps files outside a run folder: the user cache and its package resources."""

from __future__ import annotations

import os
from pathlib import Path

RESOURCES = Path(__file__).with_name("resources")  # package data: tutorial, explorer page


def user_cache_dir() -> str:
    """``$XDG_CACHE_HOME/vaelab`` (default ``~/.cache/vaelab``): MNIST and compiled programs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vaelab")
