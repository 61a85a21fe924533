"""`cxrbench train <baseline>`: the shared training loop and the phases of each baseline.

supervised: one phase (class-weighted CE). moco / inpainting: a pretext phase (`--pretrain-epochs`),
then fine-tuning of the same encoder with a fresh head (`--epochs`, full or linear probe). multitask:
one joint phase. Every phase: AdamW, linear warm-up then cosine decay, bf16 autocast and channels_last
on CUDA, optional torch.compile, DDP under torchrun; validation after each epoch on the main process;
only rank 0 writes the checkpoint.
"""
from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from baselines.config import TrainConfig
from baselines.data import (
    Samples,
    TrainRows,
    has_opacity_targets,
    make_loader,
    select_rows,
)
from baselines.runtime import Runtime, setup_runtime
from baselines.task import Task, batches
from benchmark.core.errors import DataError

MAX_LOGGED_STEPS = 1000  # per phase; longer histories are averaged into this many points


@dataclass
class TrainOutcome:
    out_dir: Path
    config: TrainConfig
    log: dict
    is_main: bool = True
    phases: list[dict] = field(default_factory=list)


def train_baseline(cfg: TrainConfig) -> TrainOutcome:
    from baselines.export import check_out_dir, export

    cfg.check()
    rt = setup_runtime(device=cfg.device, amp=cfg.amp, channels_last=cfg.channels_last,
                       compile=cfg.compile, workers=cfg.workers)
    try:
        if rt.is_main:
            check_out_dir(cfg.out_dir)
        _seed_everything(cfg.seed)
        t0 = time.perf_counter()
        from benchmark.data.dataset import resolve_dataset

        dataset = resolve_dataset(cfg.data)
        rows = select_rows(dataset, leave_out_site=cfg.leave_out_site, val_fraction=cfg.val_fraction,
                           seed=cfg.seed)
        with_seg = cfg.baseline == "multitask"
        if with_seg and not has_opacity_targets(dataset):
            raise DataError("the multitask baseline needs opacity masks or boxes; this dataset has neither "
                            "(fill the manifest's 'boxes' column)", where=dataset.name)
        model, architecture, arch_args, phases = _build(cfg, rt, rows)
        loaders = _loaders(cfg, rt, rows, with_seg)
        logs = [run_phase(rt, make_task(), *loaders, epochs=epochs, steps=cfg.steps, lr=cfg.lr,
                          weight_decay=cfg.weight_decay, validate=cfg.validate) for make_task, epochs in phases]
        log = {"baseline": cfg.baseline, "config": cfg.to_json(), "data": {"spec": cfg.data or "synth",
               "name": dataset.name, "manifest_sha256": dataset.manifest.sha256, **rows.summary(),
               **({"seg_trained": rows.seg_trained()} if with_seg else {})},
               "runtime": {"device": str(rt.device), "world_size": rt.world_size, "amp_bf16": rt.amp,
                           "channels_last": rt.channels_last, "compile": rt.compile, "workers": rt.workers,
                           "torch": torch.__version__},
               "phases": logs, "seconds": round(time.perf_counter() - t0, 2)}
        if rt.is_main:
            export(cfg.out_dir, model, cfg=cfg, architecture=architecture, architecture_args=arch_args,
                   log=log)
        rt.barrier()
        return TrainOutcome(cfg.out_dir, cfg, log, is_main=rt.is_main, phases=logs)
    finally:
        rt.close()


def _build(cfg: TrainConfig, rt: Runtime, rows: TrainRows):
    """The exported module, its card architecture, and the (task, epochs) phases that train it."""
    from baselines.backbones import create_classifier
    from baselines.supervised import SupervisedTask

    weights = rows.class_weights()
    if cfg.baseline == "multitask":
        from baselines.multitask import MultitaskTask, build_multitask

        net = build_multitask(cfg.backbone, num_classes=4, in_chans=1)
        task = MultitaskTask(rt, cfg.seed, net, weights, seg_weight=cfg.seg_weight, hflip=cfg.hflip)
        return net, f"cxrbench:multitask_{cfg.backbone}", {}, [(lambda: task, cfg.epochs)]
    model, arch_args = create_classifier(cfg.backbone, num_classes=4, image_size=cfg.image_size)
    model = rt.place(model)
    # Phases are built when they start: fine-tuning needs the encoder as pre-training left it.
    phases: list[tuple[Callable[[], Task], int]] = []
    if cfg.baseline == "moco":
        from baselines.moco import MoCoTask

        phases.append((lambda: MoCoTask(rt, cfg.seed, model, dim=cfg.moco_dim, queue=cfg.moco_queue,
                                        temperature=cfg.moco_temperature, momentum=cfg.moco_momentum),
                       cfg.pretrain_epochs))
    elif cfg.baseline == "inpainting":
        from baselines.inpainting import InpaintingTask

        phases.append((lambda: InpaintingTask(rt, cfg.seed, model, mask_area=cfg.mask_area), cfg.pretrain_epochs))
    pretrained = bool(phases)

    def finetune() -> Task:
        if pretrained:
            model.reset_classifier(4)  # a fresh class head on the pre-trained encoder
            rt.place(model)
        return SupervisedTask(rt, cfg.seed + 1, model, weights, hflip=cfg.hflip,
                              linear=pretrained and cfg.finetune == "linear",
                              phase="finetune" if pretrained else "supervised")

    phases.append((finetune, cfg.epochs))
    return model, f"timm:{cfg.backbone}", arch_args, phases


def _loaders(cfg: TrainConfig, rt: Runtime, rows: TrainRows, with_seg: bool):
    pin = rt.cuda
    train = make_loader(Samples(rows.dataset, rows.train, cfg.image_size, with_seg=with_seg),
                        batch_size=cfg.batch_size, train=True, workers=rt.workers, seed=cfg.seed,
                        world_size=rt.world_size, rank=rt.rank, pin_memory=pin)
    val = None
    if cfg.validate and rt.is_main and len(rows.val):
        val = make_loader(Samples(rows.dataset, rows.val, cfg.image_size, with_seg=with_seg),
                          batch_size=cfg.batch_size, train=False, workers=rt.workers, seed=cfg.seed,
                          pin_memory=pin)
    return train, val


def _schedule(total: int):
    warm = max(1, min(total // 20, 500))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    return factor


def run_phase(rt: Runtime, task: Task, train_loader, val_loader, *, epochs: int, steps: int | None,
              lr: float, weight_decay: float, validate: bool = True) -> dict:
    """Train one phase; returns its log (per-epoch losses and validation, steps, throughput)."""
    module = rt.place(task.module)
    per_epoch = len(train_loader)
    total = steps if steps is not None else epochs * per_epoch
    params = task.parameters()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=rt.cuda or None)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(total))
    net = rt.wrap(module)
    epochs_log: list[dict] = []
    if validate and val_loader is not None:
        epochs_log.append({"epoch": 0, "step": 0, "val": task.validate(val_loader)})
    rt.barrier()
    if rt.cuda:
        torch.cuda.reset_peak_memory_stats(rt.device)
    history: list[torch.Tensor] = []
    warm = min(10, total // 5)
    t_start = time.perf_counter()
    t_warm = t_start
    step, epoch = 0, 0
    while step < total:
        epoch += 1
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        task.train_mode()
        losses: list[torch.Tensor] = []
        extras: dict[str, list[torch.Tensor]] = {}
        for batch in batches(train_loader, rt, where=train_loader.dataset.dataset.name):
            with rt.autocast():
                loss, extra = task.loss(net, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            task.after_step()
            losses.append(loss.detach().float())
            for k, v in extra.items():
                extras.setdefault(k, []).append(v.detach().float())
            step += 1
            if step == warm:
                rt.synchronize()
                t_warm = time.perf_counter()
            if step >= total:
                break
        if not losses:
            raise DataError("the training loader gave no batches", where="--batch-size")
        epoch_losses = torch.stack(losses).cpu()  # one device sync per epoch, not per step
        history.append(epoch_losses)
        entry = {"epoch": epoch, "step": step, "train_loss": rt.mean(float(epoch_losses.mean())),
                 **{f"train_{k}": rt.mean(float(torch.stack(v).mean())) for k, v in extras.items()}}
        if validate and val_loader is not None:
            entry["val"] = task.validate(val_loader)
        epochs_log.append(entry)
        rt.barrier()
    rt.synchronize()
    t_end = time.perf_counter()
    measured = total - warm
    images = measured * train_loader.batch_size * rt.world_size
    return {
        "phase": task.phase, "steps": total, "epochs": epoch, "steps_per_epoch": per_epoch,
        "batch_size": train_loader.batch_size, "world_size": rt.world_size, "lr": lr,
        "seconds": round(t_end - t_start, 3),
        "images_per_s": round(images / (t_end - t_warm), 2) if measured > 0 and t_end > t_warm else None,
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated(rt.device) / 2**30, 3) if rt.cuda else None,
        "step_losses": _downsample(torch.cat(history).numpy()),
        "epochs_log": epochs_log,
    }


def _downsample(x: np.ndarray) -> list[float]:
    if len(x) > MAX_LOGGED_STEPS:
        edges = np.linspace(0, len(x), MAX_LOGGED_STEPS + 1).astype(int)
        x = np.array([x[a:b].mean() for a, b in itertools.pairwise(edges)])
    return [round(float(v), 6) for v in x]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
