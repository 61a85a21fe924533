"""The Ray executor on a local Ray instance: same results as the local executor, GPU-aware planning,
and a failing task that loses nothing the other tasks computed."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import ray  # the [ray] extra is in the README's install line: a missing extra fails here, not skips

from benchmark.core.errors import CxrbenchError
from benchmark.execution.ray import plan_resources
from tests.helpers import CANONICAL, card, cli, latest_result, written_synth



@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One local Ray instance for the module (starting one takes seconds); the executor uses it.

    Its workers have a cache of their own, as nodes of a cluster would: runs without --cache-dir
    then exercise the path where predictions come back to the driver through Ray."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"CXRBENCH_CACHE": str(tmp_path_factory.mktemp("worker-cache"))}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    return written_synth(tmp_path_factory, n_patients=30, image_size=96, seed=12)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A safetensors SmallCNN: it has embeddings, which cross_site probes."""
    import torch
    from safetensors.torch import save_file

    from benchmark.models.small_cnn import SmallCNN

    torch.manual_seed(4)
    folder = tmp_path_factory.mktemp("m")
    save_file(SmallCNN().state_dict(), str(folder / "model.safetensors"))
    (folder / "card.json").write_text(json.dumps(card("small", CANONICAL, fmt="safetensors", size=48,
                                                      architecture="cxrbench:small_cnn")))
    return folder


def _run(capsys, tmp_path, data, ckpt, *extra):
    return cli(capsys, "run", "--model", str(ckpt), "--data", str(data), "--suites", "subtype,cross_site,shortcut",
               "--bootstrap", "50", "--batch-size", "8", "--out", str(tmp_path / "runs"), *extra)


def test_ray_executor_equals_local_executor(capsys, tmp_path, synth_dir, ckpt, local_ray):
    code, _, err = _run(capsys, tmp_path, synth_dir, ckpt, "--cache-dir", str(tmp_path / "local"))
    assert code == 0, err
    local = latest_result(tmp_path / "runs")

    # The driver's cache (this test's CXRBENCH_CACHE) is not the workers': every row travels back.
    code, out, err = _run(capsys, tmp_path, synth_dir, ckpt, "--executor", "ray", "--shards", "3")
    assert code == 0, err
    on_ray = latest_result(tmp_path / "runs")
    n = local["dataset"]["counts"]["images"]
    assert on_ray["provenance"]["device"].startswith("ray")
    assert on_ray["provenance"]["request"]["suites"] == ["subtype", "cross_site", "shortcut"]
    # Every view's rows were computed by Ray tasks (one per view and shard), none by the driver.
    assert on_ray["provenance"]["forward_images"] == local["provenance"]["forward_images"] >= n
    assert on_ray["suites"]["subtype"] == local["suites"]["subtype"]
    # cross_site probes the embeddings, which travel back beside the clean probabilities.
    assert "model embedding" in json.dumps(local["suites"]["cross_site"])
    assert on_ray["suites"]["cross_site"]["metrics"] == local["suites"]["cross_site"]["metrics"]
    assert on_ray["suites"]["shortcut"]["metrics"] == local["suites"]["shortcut"]["metrics"]

    code, out, err = _run(capsys, tmp_path, synth_dir, ckpt, "--executor", "ray")
    assert code == 0, err
    assert latest_result(tmp_path / "runs")["provenance"]["forward_images"] == 0  # the driver's store serves a rerun


def test_a_failing_task_keeps_the_other_tasks_rows(capsys, tmp_path, synth_dir, ckpt, local_ray):
    frame = pd.read_csv(synth_dir / "manifest.csv")
    last = len(frame) - 1
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    (data / frame["path"].iloc[last]).rename(tmp_path / "away.png")
    code, _, err = cli(capsys, "run", "--model", str(ckpt), "--data", str(data), "--suites", "subtype",
                       "--bootstrap", "20", "--batch-size", "8", "--out", str(tmp_path / "runs"),
                       "--executor", "ray", "--shards", "2")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and f"row {last + 2}" in lines[0] and "Traceback" not in err

    (tmp_path / "away.png").rename(data / frame["path"].iloc[last])
    from benchmark import api

    outcome = api.run(api.RunRequest(model=str(ckpt), data=str(data), suites=("subtype",), batch_size=8,
                                     bootstrap=20, out=tmp_path / "runs", progress=False))
    # The shard that finished came back to the driver's store; only the failed shard is computed
    # again here (its first batches wait in the worker's cache, which a Ray rerun would use).
    n_batches = -(-len(frame) // 8)
    assert outcome.forward_images == len(frame) - (n_batches // 2) * 8


@pytest.mark.parametrize("device, cluster, workers, want", [
    (None, {"CPU": 8.0, "GPU": 2.0}, 0, (1.0, 1.0, "cuda", 2)),
    ("auto", {"CPU": 8.0, "GPU": 4.0}, 3, (4.0, 1.0, "cuda", 4)),
    ("cpu", {"CPU": 8.0, "GPU": 2.0}, 1, (2.0, 0.0, "cpu", 4)),
    (None, {"CPU": 2.0}, 0, (1.0, 0.0, "cpu", 2)),
    ("cuda:0", {"CPU": 16.0, "GPU": 8.0}, 0, (1.0, 1.0, "cuda", 8)),
])
def test_tasks_ask_for_a_gpu_when_the_cluster_has_one(device, cluster, workers, want):
    r = plan_resources(device, cluster, workers=workers)
    assert (r.num_cpus, r.num_gpus, r.device, r.shards) == want


def test_cuda_on_a_cluster_without_gpus_is_refused():
    with pytest.raises(CxrbenchError, match="no GPU"):
        plan_resources("cuda", {"CPU": 4.0})
    assert plan_resources(None, {"CPU": 4.0}, shards=7).shards == 7
