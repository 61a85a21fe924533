"""Where and how training runs: device, bf16 autocast, channels_last, torch.compile, and DDP under torchrun.

The same code runs as one process or as N processes started by `torchrun --nproc_per_node N`
(WORLD_SIZE/RANK/LOCAL_RANK in the environment): NCCL on GPUs, gloo on CPU.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from benchmark.core.errors import CxrbenchError


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    workers: int = 0
    owns_group: bool = False   # this process started the process group, so it ends it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=True)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def place(self, module: nn.Module) -> nn.Module:
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module as the training step calls it: DDP across processes, then compiled if asked."""
        net: nn.Module = module
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(module, device_ids=[self.device.index] if self.cuda else None)
        if self.compile:
            net = torch.compile(net)
        return net

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, value: float) -> float:
        """The mean of a per-process number over all processes."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device if self.cuda else "cpu")
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup_runtime(*, device: str | None, amp: bool | None, channels_last: bool | None, compile: bool,
                  workers: int | None) -> Runtime:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1:
        dev = _distributed_device(device, local_rank)
    else:
        dev = _single_device(device)
    owns = False
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        owns = True
    cuda = dev.type == "cuda"
    if cuda:
        # TF32 matmuls for whatever runs outside bf16 autocast; cudnn picks the fastest kernels.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if workers is None:
        workers = min(8, max(1, (os.cpu_count() or 2) // world - 1)) if cuda else 0
    if amp and not cuda and dev.type != "cpu":
        raise CxrbenchError(f"bf16 autocast is supported on cuda and cpu, not {dev.type}", where="--amp")
    return Runtime(device=dev, rank=rank, local_rank=local_rank, world_size=world,
                   amp=cuda if amp is None else amp, channels_last=cuda if channels_last is None else channels_last,
                   compile=compile, workers=workers, owns_group=owns)


def _single_device(requested: str | None) -> torch.device:
    from benchmark.execution.forward import pick_device

    return pick_device(requested)


def _distributed_device(requested: str | None, local_rank: int) -> torch.device:
    if requested in (None, "auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if requested in (None, "auto", "cpu") or (requested == "cuda" and not torch.cuda.is_available()):
        if requested == "cuda":
            raise CxrbenchError("CUDA was requested but no GPU is available", where="--device")
        return torch.device("cpu")
    raise CxrbenchError(f"under torchrun use --device cuda or cpu (each process takes cuda:LOCAL_RANK), "
                        f"got {requested!r}", where="--device")
