"""Where training runs: the device, the numeric precision, and the processes of a distributed run.

`--device auto` takes a GPU when PyTorch sees one. On a GPU, mixed precision: bf16 where the GPU
has it, else fp16 with a gradient scaler; frames go in channels-last layout and through pinned
memory. On a CPU, fp32. Under `torchrun` (several processes, WORLD_SIZE > 1) each process is one
rank of a DistributedDataParallel run: NCCL between GPUs, gloo between CPU processes.
"""

from __future__ import annotations

import datetime
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from actionrec.errors import TrainingError
from actionrec.training.config import TrainConfig

# Cache building can keep the other ranks waiting at a barrier for a long time.
DISTRIBUTED_TIMEOUT = datetime.timedelta(hours=6)


@dataclass(frozen=True)
class Runtime:
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"  # "fp32", "bf16" or "fp16"
    rank: int = 0
    world: int = 1

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def main(self) -> bool:
        """The process that writes the run directory and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def autocast(self) -> AbstractContextManager[Any]:
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """Scales fp16 losses so small gradients survive; does nothing otherwise."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"device": str(self.device), "precision": self.precision, "processes": self.world}
        if self.cuda:
            facts["gpu"] = torch.cuda.get_device_name(self.device)
        return facts


def cores_per_process() -> int:
    """This process's share of the CPU cores it may use (torchrun starts several per machine)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def choose_device(requested: str, local_rank: int = 0) -> torch.device:
    """'auto': the GPU of this process's local rank when there is one, else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"--device {requested}: PyTorch sees no GPU here (is this a CUDA build of "
                                "torch, with a driver?). Use --device cpu, or auto.")
        device = torch.device(requested if ":" in requested else f"cuda:{local_rank}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TrainingError(f"--device {requested}: there are only {torch.cuda.device_count()} GPU(s).")
        return device
    return torch.device("cpu")


def choose_precision(requested: str, device: torch.device) -> str:
    """'auto': bf16 on GPUs that support it, else fp16; fp32 on CPUs. fp16/bf16 only on GPUs."""
    if device.type != "cuda":
        if requested not in ("auto", "fp32"):
            raise TrainingError(f"--precision {requested} needs a GPU; on the CPU training runs in fp32.")
        return "fp32"
    if requested == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        raise TrainingError("--precision bf16: this GPU does not support bfloat16; use fp16 or auto.")
    return requested


def start(config: TrainConfig) -> Runtime:
    """The runtime of this process, joining the distributed run when torchrun started it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(config.device, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=DISTRIBUTED_TIMEOUT)
    return Runtime(device, choose_precision(config.precision, device), rank, world)


def stop(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def gather(runtime: Runtime, value: Any) -> list[Any]:
    """`value` from every rank, in rank order (just [value] in a single process)."""
    if not runtime.distributed:
        return [value]
    values: list[Any] = [None] * runtime.world
    dist.all_gather_object(values, value)
    return values
