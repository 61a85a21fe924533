"""Policies and smaller hostile inputs (issue 14, items 3 (YAML) and 6): a "billion laughs" policy fails
fast in little memory, a duplicate key or a Python tag is refused, terminal escapes in names do not
reach the terminal, an unwritable --out or cache is found before any forward pass, errors name the real
manifest file and line (and for NaN outputs the image), and --strict-paths refuses paths outside the
manifest's folder. Each: exit code, the one line, and nothing run, written or lost."""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from benchmark.core.errors import CxrbenchError
from benchmark.reporting.gate import load_policy
from benchmark.core.textsafe import terminal_safe
from tests.helpers import CANONICAL, TinyNet, card, cli, save_model
from tests.test_gate import GOOD_DEFAULT, result_with, write_policy, write_run
from tests.test_leaderboard import planted_predictions

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CHECK = "checks:\n  - metric: subtype.macro_auroc\n    min: 0.5\n"


def one_line_error(code: int, err: str, *needles: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n" + CHECK  # 9^9 = 387 million "lol"s once expanded


# --- policy YAML ---------------------------------------------------------------------------------

def test_a_billion_laughs_policy_fails_fast_in_little_memory(tmp_path):
    bomb = write_policy(tmp_path, billion_laughs())
    assert bomb.stat().st_size < 1000
    tracemalloc.start()
    with pytest.raises(CxrbenchError, match=r"line 2, column \d+: aliases \(\*a\) are not allowed"):
        load_policy(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 * 2**20  # nothing was expanded

    run = write_run(tmp_path, result_with(GOOD_DEFAULT))

    def small_memory() -> None:  # the whole gate process gets 1.5 GiB of address space
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))

    proc = subprocess.run([sys.executable, "-m", "benchmark.cli", "gate", str(run), "--policy", str(bomb)],
                          capture_output=True, text=True, timeout=60, preexec_fn=small_memory,
                          env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                               "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    one_line_error(proc.returncode, proc.stderr, str(bomb), "aliases (*a) are not allowed in a policy")


def test_a_duplicate_key_is_refused_not_silently_overridden(tmp_path, capsys):
    run = write_run(tmp_path, result_with(GOOD_DEFAULT))
    policy = write_policy(tmp_path, "checks:\n  - metric: subtype.macro_auroc\n    min: 0.95\n    min: 0.1\n")
    code, out, err = cli(capsys, "gate", str(run), "--policy", str(policy))
    one_line_error(code, err, str(policy), "line 4, column 5: duplicate key 'min' (each key may appear once)")
    assert out == ""


def test_a_python_tag_in_a_policy_runs_nothing(tmp_path, capsys):
    sentinel = tmp_path / "SENTINEL"
    run = write_run(tmp_path, result_with(GOOD_DEFAULT))
    policy = write_policy(tmp_path, f'checks: !!python/object/apply:os.system ["touch {sentinel}"]\n')
    code, _, err = cli(capsys, "gate", str(run), "--policy", str(policy))
    one_line_error(code, err, "not valid YAML", "python/object/apply:os.system")
    assert not sentinel.exists()


# --- names on the terminal -------------------------------------------------------------------------

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31mevil\u202e"


def test_terminal_safe_shows_control_characters_as_question_marks():
    assert terminal_safe(ESCAPES) == "?]0;owned??[2J?[31mevil?"
    assert terminal_safe("tab\tand ünïcode") == "tab\tand ünïcode"


def test_gate_and_compare_print_no_escape_sequences_from_names(tmp_path, capsys):
    run = write_run(tmp_path, result_with(GOOD_DEFAULT, model=ESCAPES))
    policy = write_policy(tmp_path, CHECK)
    code, out, err = cli(capsys, "gate", str(run), "--policy", str(policy))
    assert code == 0 and "?[2J?[31mevil" in out and "\x1b" not in out + err and "\x07" not in out + err

    from benchmark import api
    from benchmark.data.dataset import resolve_dataset

    api.synth(tmp_path / "synth", n_patients=30, image_size=64, seed=1)
    table = resolve_dataset(str(tmp_path / "synth")).table
    runs = []
    for k in range(2):
        path = tmp_path / f"m{k}.csv"
        planted_predictions(table, 1.0 + k, k).to_csv(path, index=False)
        done = api.run(api.RunRequest(predictions=path, data=str(tmp_path / "synth"), out=tmp_path / f"runs{k}",
                                      suites=("subtype",), bootstrap=20, progress=False)).run_dir
        result = json.loads((done / "result.json").read_text())
        result["model"]["name"] = f"{ESCAPES}{k}"
        (done / "result.json").write_text(json.dumps(result))
        runs.append(str(done))
    code, out, err = cli(capsys, "compare", *runs, "--bootstrap", "20", "--metrics", "accuracy")
    assert code == 0, err
    assert "evil?0" in out and "\x1b" not in out + err and "\x07" not in out + err


# --- run-time checks ---------------------------------------------------------------------------------

def write_images(folder: Path, names: list[str], *, flat: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        pixels = np.full((64, 64), 128, np.uint8) if name == flat else rng.integers(0, 255, (64, 64), np.uint8)
        Image.fromarray(pixels).save(folder / name)


def manifest(folder: Path, name: str, rows: list[str]) -> Path:
    path = folder / name
    path.write_text("path,label,patient_id\n" + "".join(f"{r}\n" for r in rows))
    return path


def test_an_unwritable_out_or_cache_is_one_line_before_any_forward_pass(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    data = "synth:n_patients=4,image_size=64"
    code, _, err = cli(capsys, "run", "--data", data, "--out", str(blocker / "runs"),
                       "--cache-dir", str(tmp_path / "cache"), "--suites", "subtype")
    one_line_error(code, err, str(blocker / "runs"), "cannot write here", "--out")
    assert not (tmp_path / "cache" / "predictions").exists()  # no forward pass was made
    code, _, err = cli(capsys, "run", "--data", data, "--out", str(tmp_path / "runs"),
                       "--cache-dir", str(blocker / "cache"), "--suites", "subtype")
    one_line_error(code, err, str(blocker / "cache"), "cannot write here", "--cache-dir")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert blocker.read_text() == "in the way"


def test_image_errors_name_the_real_manifest_file_and_line(tmp_path, capsys):
    d = tmp_path / "d"
    write_images(d, ["a.png", "b.png"])
    # A blank line and a quoted newline: line numbers are counted in the file, not guessed from rows.
    path = manifest(d, "study_list.csv", ["a.png,negative,p1", "", '"b.png",typical,"p\n2"', "gone.png,atypical,p3"])
    code, _, err = cli(capsys, "run", "--data", str(path), "--out", str(tmp_path / "runs"), "--suites", "subtype")
    line = one_line_error(code, err, str(path), "row 6", "gone.png")
    assert "manifest.csv" not in line


class NanOnFlat(nn.Module):
    """TinyNet, except that a flat image gets NaN outputs."""

    def __init__(self):
        super().__init__()
        self.net = TinyNet(seed=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))) < 1e-6
        out = self.net(x)
        return torch.where(flat[:, None], torch.full_like(out, float("nan")), out)


def test_a_nan_output_names_the_manifest_row_and_image(tmp_path, capsys):
    d = tmp_path / "d"
    names = ["a.png", "b.png", "c.png", "flat.png"]
    write_images(d, names, flat="flat.png")
    path = manifest(d, "cases.csv", [f"{n},{CANONICAL[k]},p{k}" for k, n in enumerate(names)])
    ckpt = save_model(NanOnFlat(), tmp_path / "m.pt", card("nan-on-flat", CANONICAL, size=32))
    cache = tmp_path / "cache"
    code, _, err = cli(capsys, "run", "--model", str(ckpt), "--data", str(path), "--out", str(tmp_path / "runs"),
                       "--cache-dir", str(cache), "--batch-size", "2", "--suites", "subtype")
    one_line_error(code, err, f"{path}: row 5 (image flat.png): model 'nan-on-flat' returned NaN")
    assert len(list(cache.glob("predictions/*/*/rows_*.npz"))) == 1  # the first batch is kept


def test_strict_paths_refuses_paths_outside_the_manifests_folder(tmp_path, capsys):
    d = tmp_path / "d"
    write_images(d, ["a.png", "b.png"])
    write_images(tmp_path, ["outside.png"])
    path = manifest(d, "m.csv", ["a.png,negative,p1", "../outside.png,typical,p2", "b.png,atypical,p3"])
    cache = tmp_path / "cache"
    code, _, err = cli(capsys, "run", "--data", str(path), "--out", str(tmp_path / "runs"), "--cache-dir", str(cache),
                       "--suites", "subtype", "--bootstrap", "20", "--strict-paths")
    one_line_error(code, err, str(path), "row 3: path '../outside.png' climbs out of the manifest's folder",
                   "--strict-paths")
    assert not list(cache.glob("predictions/*/*/*.npz")) and not any((tmp_path / "runs").iterdir())
    absolute = manifest(d, "abs.csv", ["a.png,negative,p1", f"{tmp_path / 'outside.png'},typical,p2"])
    code, _, err = cli(capsys, "run", "--data", str(absolute), "--out", str(tmp_path / "runs"), "--suites", "subtype",
                       "--strict-paths")
    one_line_error(code, err, "row 3: path", "is absolute")
    # Without the option such paths are read, as documented.
    code, _, err = cli(capsys, "run", "--data", str(path), "--out", str(tmp_path / "runs"), "--cache-dir", str(cache),
                       "--suites", "subtype", "--bootstrap", "20")
    assert code == 0, err
