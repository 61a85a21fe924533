"""Provenance records this package's commit only when it runs from its own checkout."""
from __future__ import annotations

import subprocess
from pathlib import Path

from benchmark.core.source import own_commit, package_root


def _repo(path: Path, pyproject: str | None) -> str:
    path.mkdir(parents=True, exist_ok=True)
    (path / "benchmark").mkdir(exist_ok=True)
    if pyproject is not None:
        (path / "pyproject.toml").write_text(pyproject)
    env = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", *env, "-C", str(path), "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_own_checkout_gives_its_commit(tmp_path):
    head = _repo(tmp_path / "cx", '[project]\nname = "cxrbench"\nversion = "0"\n')
    assert own_commit(tmp_path / "cx") == head


def test_someone_elses_repository_gives_no_commit(tmp_path):
    _repo(tmp_path / "user", '[project]\nname = "their-app"\n')  # the package installed inside it
    assert own_commit(tmp_path / "user") is None
    _repo(tmp_path / "bare", None)
    assert own_commit(tmp_path / "bare") is None


def test_a_copy_below_another_repository_is_not_its_top_level(tmp_path):
    _repo(tmp_path / "user", '[project]\nname = "their-app"\n')
    nested = tmp_path / "user" / "vendor" / "cx"
    nested.mkdir(parents=True)
    (nested / "pyproject.toml").write_text('[project]\nname = "cxrbench"\n')
    (nested / ".git").write_text("gitdir: /nonexistent\n")  # not a work tree of its own
    assert own_commit(nested) is None


def test_run_provenance_uses_it(monkeypatch):
    from benchmark.execution.score import git_commit

    assert git_commit() == own_commit()  # this checkout's, when the tests run from one
    monkeypatch.setattr("benchmark.core.source.package_root", lambda: Path("/nonexistent-root"))
    assert git_commit() is None
    assert (package_root() / "benchmark" / "api.py").is_file()
