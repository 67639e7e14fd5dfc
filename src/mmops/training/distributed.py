"""Data-parallel training under `torchrun`: one process per device, each training the same
model on its share of every epoch's batches (DistributedDataParallel averages the gradients),
so the replicas stay identical. Rank 0 alone writes, logs and registers.

    torchrun --nproc-per-node 2 -m mmops.cli stage train      # then: dvc commit train

Outside torchrun (no WORLD_SIZE in the environment), `Dist` says "one process", and training
is exactly the single-process code path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this process writes, logs and registers (rank 0)."""
        return self.rank == 0

    def device(self, prefer: str | None = None) -> torch.device:
        """This process's device: the local GPU of its rank when CUDA is there, else the CPU."""
        if prefer:
            return torch.device(prefer)
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")

    def batch_size(self, global_batch: int) -> int:
        """Each process's share of `global_batch`, so the optimiser sees the batch size it has
        in one process (and `train.lr` means the same)."""
        if global_batch % self.world_size:
            raise ValueError(f"train.batch_size {global_batch} must divide evenly among {self.world_size} processes")
        return global_batch // self.world_size

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """`values` summed over every process (themselves, in one process)."""
        if not self.enabled:
            return values
        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                              device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(tensor)
        return dict(zip(keys, tensor.tolist()))


    def check_in_sync(self, model: torch.nn.Module) -> None:
        """Raise unless every process holds the same weights (DDP keeps them so: a replica that
        drifted would make rank 0's model one of several)."""
        if not self.enabled:
            return
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()
        spread = torch.stack([checksum, -checksum]).to("cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(spread, op=dist.ReduceOp.MAX)  # (max, -min) of the checksums
        if float(spread[0] + spread[1]) != 0.0:
            raise RuntimeError(f"the {self.world_size} training processes ended with different weights")


class Step(torch.nn.Module):
    """One training forward of `model`, the alignment loss included: DistributedDataParallel
    must see every parameter a step uses inside the forward it wraps. `model` has an
    `alignment` (None, or a module whose `loss` takes the output's embeddings and the masks of
    the modalities each sample really has)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: Any, has: dict[str, torch.Tensor], align: bool) -> tuple[Any, torch.Tensor | None]:
        out = self.model(*inputs)
        return out, self.model.alignment.loss(out.embeddings, has) if align else None


def training_step(model: torch.nn.Module, job: Dist, device: torch.device) -> torch.nn.Module:
    """`Step(model)`, wrapped in DistributedDataParallel when `job` has several processes."""
    if not job.enabled:
        return Step(model)
    # the unused-parameter search: a head whose modality dropout hid in a whole batch gets no gradient
    return DistributedDataParallel(Step(model), device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)


@contextmanager
def from_environment(device: str | None = None) -> Iterator[Dist]:
    """The job torchrun started this process in (its WORLD_SIZE, RANK, LOCAL_RANK), with the
    process group joined for the block: NCCL on CUDA, gloo on the CPU. One process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield Dist()
        return
    job = Dist(rank=int(os.environ["RANK"]), world_size=world_size, local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(job.local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield job
    finally:
        dist.destroy_process_group()


def launch(processes: int, params_file: Path, artifacts: Path, device: str | None = None) -> dict[str, Any]:
    """`mmops stage train` under torchrun on this machine, in `processes` processes (what the
    Prefect training flow runs for `train_processes` > 1); rank 0's summary. Its logs go to
    this process's stderr; a failed process raises `CalledProcessError`."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "mmops.cli", "stage", "train", "--params", str(params_file), "--artifacts", str(artifacts)]
    done = subprocess.run(command + (["--device", device] if device else []), check=True, stdout=subprocess.PIPE,
                          text=True)
    summaries = [json.loads(line.removeprefix("[train] ")) for line in done.stdout.splitlines()
                 if line.startswith("[train] ")]
    return next(s for s in summaries if "rank" not in s)
