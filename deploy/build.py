"""`fab build`: a tarball of what runs, named and stamped with the commit it was built from (release.json)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import runpy
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from invoke.exceptions import Exit

from deploy.hosts import NAME

PROJECT_DIR = Path(__file__).resolve().parent.parent
# What runs on a server: the app, its migrations, deploy/ (server configuration and the health check) and the
# top-level .py and .ini files, except the local override (each host has its own, in shared/) and the
# development tools (the fabfile and its modules among them).
RELEASE_DIRS = ("app", "migrations", "deploy")
RELEASE_TOP_LEVEL = ("*.py", "*.ini", "requirements.txt")
NOT_RELEASED = {"config_override.py", "hot_deploy.py", "fabfile.py", "deploy/__init__.py", "deploy/fabric_steps.py",
                "deploy/build.py", "deploy/hosts.py", "deploy/fleet.py", "deploy/service.py"}
EXCLUDED_NAMES = {"__pycache__", ".DS_Store"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
BUILD_FILE = "release.json"  # app/version.py reads it
TIME_FORMAT = "%Y%m%dT%H%M%S.%f"  # sorts in time order; sub-second, so two builds or deploys never collide
RELEASE_NAME = re.compile(r"[0-9]{8}T[0-9]{6}\.[0-9]{6}")  # a release directory's name: TIME_FORMAT's output


def build_dir() -> Path:
    return Path(os.environ.get("BUILD_DIR", PROJECT_DIR / "dist"))


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_state() -> tuple[str | None, bool]:
    """(the commit HEAD names, whether what a build would pack differs from it): None and True outside git."""
    commit = _git("rev-parse", "--verify", "HEAD")
    if commit is None:
        return None, True
    changes = _git("status", "--porcelain", "--untracked-files=all", "--", *_packed_pathspecs())
    return commit, changes != ""


def _packed_pathspecs() -> list[str]:
    return [*RELEASE_DIRS, *(f":(glob){pattern}" for pattern in RELEASE_TOP_LEVEL),
            *(f":(exclude){name}" for name in sorted(NOT_RELEASED))]


def release_files(in_git: bool, dirty: bool) -> list[Path]:
    """The paths that go into a build. In git, the files git knows, so an ignored one (a local database, a cache)
    is never packed: the tracked ones, with ``dirty`` also the untracked ones not ignored. Outside git, the
    top-level files and whole directories."""
    if in_git:
        extra = ("--others", "--exclude-standard") if dirty else ()
        listing = _git("ls-files", "-z", "--cached", *extra, "--", *_packed_pathspecs())
        if listing is None:
            raise Exit("git ls-files failed: cannot tell which files a build packs", code=1)
        files = {PROJECT_DIR / name for name in listing.split("\0") if name}
        return sorted(p for p in files if p.is_file() or p.is_symlink())  # a deleted file is not packed
    files = {p for pattern in RELEASE_TOP_LEVEL for p in PROJECT_DIR.glob(pattern) if p.is_file()}
    dirs = {PROJECT_DIR / name for name in RELEASE_DIRS if (PROJECT_DIR / name).is_dir()}
    return sorted(p for p in files | dirs if p.name not in NOT_RELEASED)


def _keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = Path(info.name).parts
    if info.name in NOT_RELEASED or EXCLUDED_NAMES & set(parts) or parts[-1].endswith(EXCLUDED_SUFFIXES):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build_wheels() -> Path:
    """Wheels of every requirement, for hosts without the package index; kept in BUILD_DIR/wheels and reused."""
    wheels = build_dir() / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels),
                    "-r", str(PROJECT_DIR / "requirements.txt")], check=True)
    return wheels


def app_version() -> str:
    """The version in app/version.py, read without importing the app (and all it imports)."""
    return str(runpy.run_path(str(PROJECT_DIR / "app" / "version.py"))["__version__"])


def make_tarball(wheels: Path | None = None, dirty: bool = False) -> Path:
    """Pack what runs with its release.json; a tree that differs from its commit (or is not in git) only with
    ``dirty``, and the build says so."""
    commit, changed = source_state()
    if changed and not dirty:
        where = "not a git checkout" if commit is None else "uncommitted changes in what a build packs"
        raise Exit(f"{where}: commit first, or build anyway with --dirty (the release then says dirty)", code=1)
    now = datetime.now(UTC)
    python = "{}.{}.{}".format(*sys.version_info[:3])  # pip chose the wheels for this exact version
    stamp = {"version": app_version(), "commit": commit, "dirty": changed,
             "built_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "wheels_python": python if wheels else None}
    out = build_dir()
    out.mkdir(parents=True, exist_ok=True)
    label = f"{(commit or 'nogit')[:12]}{'-dirty' if changed else ''}"
    path = out / f"{NAME}-{stamp['version']}-{now.strftime(TIME_FORMAT)}-{label}.tar.gz"
    partial = path.with_name(f".{path.name}.part")
    with tarfile.open(partial, "w:gz") as tar:
        for item in release_files(in_git=commit is not None, dirty=dirty):
            tar.add(item, arcname=item.relative_to(PROJECT_DIR).as_posix(), filter=_keep)
        if wheels:
            tar.add(wheels, arcname="wheels", filter=_keep)
        data = json.dumps(stamp, indent=2).encode()
        info = tarfile.TarInfo(BUILD_FILE)
        info.size, info.mtime, info.mode = len(data), int(now.timestamp()), 0o644
        tar.addfile(info, io.BytesIO(data))
    partial.rename(path)  # a build cut off half-way is never taken for one
    return path


def stamp_of(tarball: Path) -> dict:
    """The build's release.json ({} for a build from before it had one)."""
    try:
        with tarfile.open(tarball) as tar:
            member = tar.extractfile(BUILD_FILE)
            return json.loads(member.read()) if member else {}
    except (KeyError, OSError, tarfile.TarError, ValueError):
        return {}


def builds() -> list[Path]:
    """The builds in BUILD_DIR, oldest first."""
    return sorted(build_dir().glob(f"{NAME}-*.tar.gz"), key=lambda p: (p.stat().st_mtime, p.name))


def build_for_head(dirty: bool = False) -> Path:
    """The newest build of HEAD, built now if there is none; with uncommitted changes, a new build (needs
    ``dirty``): no older build can be known to hold them."""
    commit, changed = source_state()
    if commit is not None and not changed:
        for tarball in reversed(builds()):
            stamp = stamp_of(tarball)
            if stamp.get("commit") == commit and not stamp.get("dirty"):
                return tarball
    return make_tarball(dirty=dirty)


def prune_builds(keep: int, deployed: Path) -> list[Path]:
    """Remove all but the newest ``keep`` builds (never ``deployed``); the removed ones."""
    old = [p for p in builds()[:-keep] if p != deployed]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def requirements_hash(tarball: Path) -> str:
    """Names the virtual environment a build needs: the hash of its requirements.txt."""
    with tarfile.open(tarball) as tar:
        member = tar.extractfile("requirements.txt")
        assert member is not None
        return hashlib.sha256(member.read()).hexdigest()[:16]
