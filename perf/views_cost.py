"""Cost of the perturbation views: one clean pass against one pass with every view of a suite.

Both passes run side by side in one process, each on a cold prediction store, on the same model
and data. The runner decodes each image once and applies every view to the same batch, so the
target for the `shortcut` suite is

    time(all views) <= 1.15 x (1 + number of views) x time(clean pass).

    python perf/views_cost.py [--model reference] [--data synth:n_patients=100] [--suites shortcut,robustness]

It prints wall and CPU-time ratios; the CPU ratio is the steadier one on a shared, busy machine.

Without the shipped reference checkpoint, a freshly initialised network of the same architecture
(SmallCNN, 128 x 128 input) stands in: only its cost matters here.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

TARGET = 1.15


def _model(spec: str, tmp: Path):
    from benchmark.core.errors import CheckpointError
    from benchmark.models.resolve import resolve_model

    try:
        return resolve_model(spec)
    except CheckpointError:
        if spec != "reference":
            raise
    import torch

    from benchmark.models.reference import card_json
    from benchmark.models.small_cnn import SmallCNN

    torch.manual_seed(0)
    path = tmp / "stand-in.pt"
    torch.jit.save(torch.jit.script(SmallCNN().eval()), str(path))
    card = {**card_json("reference-architecture"), "format": "torchscript"}
    card.pop("architecture")
    (tmp / "stand-in.card.json").write_text(json.dumps(card))
    return resolve_model(str(path), trust_code=True)  # TorchScript this script wrote itself


def timed(model, dataset, views: list[str], store_dir: Path, batch_size: int, workers: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one pass on a cold store."""
    from benchmark.execution.runner import predict_views
    from benchmark.execution.store import PredictionStore

    t0, c0 = time.perf_counter(), time.process_time()
    _, stats = predict_views(model, dataset, views, store=PredictionStore(store_dir), batch_size=batch_size,
                             workers=workers, progress=False)
    assert stats.forward_images == len(dataset) * len(views)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="reference")
    ap.add_argument("--data", default="synth:n_patients=100")
    ap.add_argument("--suites", default="shortcut,robustness")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()

    from benchmark.data.dataset import resolve_dataset
    from benchmark.core.suite import suite_views

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = _model(args.model, tmp)
        dataset = resolve_dataset(args.data)
        timed(model, resolve_dataset("synth:n_patients=4"), ["clean", "no_lung"], tmp / "warm", 8, 0)  # imports, load
        print(f"model {model.card.name}, {len(dataset)} images of {dataset.name}, input "
              f"{model.card.input.size[0]}x{model.card.input.size[1]}, {torch_threads()} torch threads")
        for suite in args.suites.split(","):
            views = list(suite_views(suite))
            n_views = len([v for v in views if v != "clean"])
            # The clean pass is timed just before and just after, so a change in the machine's load
            # during the long pass weighs on both sides of the ratio alike.
            before = timed(model, dataset, ["clean"], tmp / f"{suite}-clean-1", args.batch_size, args.workers)
            wall, cpu = timed(model, dataset, views, tmp / suite, args.batch_size, args.workers)
            after = timed(model, dataset, ["clean"], tmp / f"{suite}-clean-2", args.batch_size, args.workers)
            clean_wall, clean_cpu = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
            ratio, cpu_ratio = wall / ((1 + n_views) * clean_wall), cpu / ((1 + n_views) * clean_cpu)
            print(f"{suite:10s} clean pass {clean_wall:7.2f} s wall {clean_cpu:7.2f} s CPU; "
                  f"clean + {n_views} views {wall:7.2f} s wall {cpu:7.2f} s CPU")
            print(f"{suite:10s} ratio to (1 + views) x clean: {ratio:.3f} wall, {cpu_ratio:.3f} CPU "
                  f"(target <= {TARGET}: {'ok' if ratio <= TARGET else 'over'})")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
