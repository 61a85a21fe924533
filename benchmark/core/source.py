"""Which code made a result: the package's version, and its commit when it runs from its own checkout.

An installed package can sit inside someone else's git repository (a virtual environment in a
user's project, a vendored copy): `git rev-parse HEAD` from the package's folder would then record
the user's commit as ours. The commit is recorded only when the folder above the package is the
top level of a git work tree and holds the pyproject.toml that names this project.
"""
from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

PROJECT = "cxrbench"


def package_root() -> Path:
    """The folder that holds the `benchmark` package (a checkout's top level, or site-packages)."""
    return Path(__file__).resolve().parent.parent.parent


def own_commit(root: Path | None = None) -> str | None:
    """HEAD of the project's own checkout at `root` (default: where this package is), else None."""
    root = Path(root or package_root()).resolve()
    if not _names_this_project(root / "pyproject.toml") or not (root / ".git").exists():
        return None
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:  # a .git of some other kind, or a nested checkout
        return None
    return _git(root, "rev-parse", "HEAD")


def _names_this_project(pyproject: Path) -> bool:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return isinstance(data.get("project"), dict) and data["project"].get("name") == PROJECT


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


__all__ = ["own_commit", "package_root"]
