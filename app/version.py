"""The release version and what was built: the API document, /api/health and the deploy tarball read them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

__version__ = "0.1.0"

# Standard library only: deploy/build.py reads this file with runpy, without importing the app (so not
# app.config's PROJECT_DIR).
PROJECT_DIR = Path(__file__).resolve().parent.parent
BUILD_FILE = "release.json"  # written into each build by `fab build` (deploy/build.py)


@cache
def build_info() -> dict[str, object]:
    """What this process runs: ``commit`` (and ``dirty``: built with uncommitted changes) and ``built_at`` from the
    build's release.json, and ``release``, the release directory it was started from on a deployed host (the
    resolved path: `current` may point elsewhere since). None (dirty False) in a checkout that was not deployed."""
    try:
        built = json.loads((PROJECT_DIR / BUILD_FILE).read_text())
    except (OSError, ValueError):
        built = {}
    if not isinstance(built, dict):
        built = {}
    release = PROJECT_DIR.name if PROJECT_DIR.parent.name == "releases" else None
    return {"commit": built.get("commit"), "dirty": bool(built.get("dirty")), "built_at": built.get("built_at"),
            "release": release}
