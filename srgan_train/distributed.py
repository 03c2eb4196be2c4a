"""Data-parallel training under ``torchrun``: the process group from torchrun's environment
(NCCL on CUDA, gloo on the CPU), each rank on its own GPU, rank 0 the only writer. The global
batch (``--batch-size``) is split evenly across ranks: rank r of W takes, at step s, the samples
``s*B + r*B/W ... s*B + (r+1)*B/W - 1``. Samples are a pure function of their index, so W
processes see exactly the single-process batches, and a resumed run continues the sequence
whatever W is."""

from __future__ import annotations

import os
from dataclasses import dataclass

from srgan_runtime.core.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


_INFO = DistInfo()


def info() -> DistInfo:
    """This process's place in the job (a single process: rank 0 of 1)."""
    return _INFO


def init_from_env(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); no-op otherwise."""
    global _INFO
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or _INFO.enabled:
        return _INFO
    import torch
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if local >= torch.cuda.device_count():
            raise UserError(f"rank {rank}: LOCAL_RANK {local} but only "
                            f"{torch.cuda.device_count()} GPU(s) here")
        torch.cuda.set_device(local)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    _INFO = DistInfo(rank, world, local)
    return _INFO


def barrier() -> None:
    if _INFO.enabled:
        import torch.distributed as dist

        dist.barrier()


def shutdown() -> None:
    global _INFO
    if _INFO.enabled:
        import torch.distributed as dist

        dist.destroy_process_group()
        _INFO = DistInfo()


def exit_now(code: int) -> None:
    """End this process with ``code`` after flushing its output and logs, without the
    interpreter's finalisation (see ``srtrain fit``: gloo's threads can abort it)."""
    import contextlib
    import logging
    import os
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def shard_indices(start_step: int, total_steps: int, batch: int, rank: int,
                  world: int) -> list[int]:
    """The sample indices rank ``rank`` of ``world`` trains on, step by step."""
    if batch % world:
        raise UserError(f"--batch-size {batch} must be divisible by the {world} processes "
                        "(it is the global batch)")
    per = batch // world
    return [s * batch + rank * per + j for s in range(start_step, total_steps)
            for j in range(per)]
