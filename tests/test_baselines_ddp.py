"""The same `cxrbench train` runs as two DDP processes under torchrun (gloo on CPU); rank 0 writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent


def test_torchrun_two_processes_train_one_checkpoint(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "benchmark.cli", "train", "supervised", "--data", "synth:n_patients=30,image_size=64,seed=4",
           "--out", str(out), "--backbone", "resnet10t", "--image-size", "64", "--batch-size", "4",
           "--steps", "3", "--device", "cpu"]
    proc = subprocess.run(cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Only rank 0 prints the summary and writes the folder.
    assert proc.stdout.count("training phases") == 1, proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "model.safetensors", "train_log.json"]
    log = json.loads((out / "train_log.json").read_text())
    assert log["runtime"]["world_size"] == 2 and log["runtime"]["device"] == "cpu"
    phase = log["phases"][0]
    assert phase["world_size"] == 2 and phase["steps"] == 3 and len(phase["step_losses"]) == 3
    # DDP's "module." prefix never reaches the checkpoint: it loads as a plain timm classifier.
    assert not any(k.startswith("module.") for k in load_file(str(out / "model.safetensors")))
    import torch

    from benchmark.models.loaded import load_model_file

    model = load_model_file(out)
    probs = model.predict(torch.rand(2, 1, 64, 64))
    assert probs.shape == (2, 4) and abs(probs.sum(axis=1) - 1).max() < 1e-6


def test_the_multi_node_recipe_with_two_launchers_as_two_nodes(tmp_path):
    """README's multi-node recipe: one torchrun per node meeting at a c10d rendezvous; here two
    launchers on this machine stand for two nodes of one process each."""
    import socket

    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "multinode"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "recipe-test",
           "-m", "benchmark.cli", "train", "supervised", "--data", "synth:n_patients=30,image_size=64,seed=4",
           "--out", str(out), "--backbone", "resnet10t", "--image-size", "64", "--batch-size", "4",
           "--steps", "2", "--device", "cpu"]
    nodes = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in nodes]
    for p, (_, err) in zip(nodes, results):
        assert p.returncode == 0, err[-3000:]
    assert sum(stdout.count("training phases") for stdout, _ in results) == 1  # global rank 0 only
    log = json.loads((out / "train_log.json").read_text())
    assert log["runtime"]["world_size"] == 2 and log["phases"][0]["world_size"] == 2
