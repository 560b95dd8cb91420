"""Training in N processes (`training.processes`, `umlstudio train --processes N`): DDP through
accelerate, gloo on a CPU and nccl on GPUs, the peft backend, the same YAML.

The worker started for a run (`python -m core.training.train --worker <output_dir>/plan.json`) becomes the
launcher: torch's elastic agent (what `torchrun` and `accelerate launch` run) starts N copies of the
same worker as ranks and waits for them. The launcher is the run's one process (its pid the run's pid,
and the worker of the run's job when it trains in the background), so the studio's Stop and `runs` see
one process per run: a Stop reaches the launcher, which passes it to the ranks (they run in sessions of
their own).

How the trainer's contracts hold under N processes:
- one run row, one pre-continue gate: both are written by `umlstudio train` before any rank starts;
- rank 0 writes the metrics, TensorBoard, `umlstudio.json`, the manifest and the run's status; HF
  saves the adapter, optimizer and scheduler once and one `rng_state_<rank>.pth` per rank. Rank 0
  writes the manifest (the mark of a complete checkpoint) after a barrier, so it lists every rank's file;
- ranks decide together: a stop (SIGTERM / SIGINT to any rank or to the launcher) or the time
  budget seen by any rank stops every rank after the same step (`any_rank`), with a checkpoint;
- a rank killed by a signal (kill -9, the out-of-memory killer) leaves the run `interrupted`: the
  launcher stops the other ranks and leaves the row for a resume, which restores every rank's RNG,
  the optimizer, the scheduler and the data position. A resume keeps the number of processes (the
  global batch depends on it);
- ranks other than 0 write their output to `<output_dir>/train.rank<N>.log`, so the run's log and
  the terminal show one copy of each line.

Unsloth's open-source build trains on one GPU, so N > 1 trains with peft (`backend_for` says so).
"""

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

from core.errors import UserError

SHUTDOWN_S = 600  # a stop waits this long for the ranks' last step and checkpoint before killing them


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """Whether this process is one rank of several (started by the launcher)."""
    return world_size() > 1


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def cores() -> int:
    return len(os.sched_getaffinity(0))


@functools.cache
def gpu_count() -> int:
    """CUDA GPUs visible to a training process, without importing torch here (the studio never does):
    none without an NVIDIA driver, else what torch counts in a child process (CUDA_VISIBLE_DEVICES applies)."""
    driver = Path("/proc/driver/nvidia/gpus")
    if not driver.is_dir() or not any(driver.iterdir()):
        return 0
    found = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return int(found.stdout.strip() or 0) if found.returncode == 0 else 0


def check(processes: int) -> None:
    """Refuse a number of processes this machine cannot run, before anything is written."""
    if processes <= 1:
        return
    gpus = gpu_count()
    if gpus and processes > gpus:
        raise UserError(
            f"training.processes {processes}: this machine shows {gpus} CUDA GPU(s) — use at most "
            f"{gpus} (one process per GPU)"
        )
    if not gpus and processes > cores():
        raise UserError(
            f"training.processes {processes}: no CUDA GPU here and only {cores()} CPU cores — use at most "
            f"{cores()} processes (one core each), or 1"
        )


def backend_for(choice: str, processes: int) -> tuple[str, str | None]:
    """The backend N processes train with, and the notice when that is not the one asked for."""
    if processes > 1 and choice != "peft":
        return "peft", (
            f"training.processes {processes}: unsloth's open-source build trains on one GPU; "
            f"training with peft (DDP through accelerate) instead of backend {choice}"
        )
    return choice, None


# ---- the launcher -----------------------------------------------------------------------------


def launch(argv: list[str], processes: int, run_id: str) -> dict[int, int]:
    """Run `argv` (a python command) as `processes` ranks under torch's elastic agent; return
    {rank: exit code} of the ranks that failed (a negative code: killed by that signal), {} when
    every rank ended well or a stop signal ended them.

    SIGTERM to this process reaches every rank (they stop together with a checkpoint); Ctrl-C in a
    terminal reaches the ranks themselves, so this process ignores SIGINT."""
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not gpu_count():  # the CPU's cores shared out, as torchrun does it, said here instead of warned
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores() // processes)))
    executable, *args = argv
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=run_id,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        signals_to_handle="SIGTERM,SIGHUP",
        shutdown_timeout=SHUTDOWN_S,
    )
    try:
        elastic_launch(config, executable)(*args)
    except SignalException:
        return {}  # the ranks got the signal, stopped with a checkpoint and said so in the store
    except ChildFailedError as exc:
        return {rank: failure.exitcode for rank, failure in exc.failures.items()}
    return {}


def rank_log(output_dir: Path | str, number: int) -> Path:
    return Path(output_dir) / f"train.rank{number}.log"


def setup_rank(output_dir: Path) -> None:
    """In a rank: follow the launcher (a SIGTERM when it dies), send a rank > 0's output to its own
    log, and join the process group the way accelerate does (gloo on a CPU, nccl on a GPU), so ranks
    can agree before the trainer exists."""
    if not launched():
        return
    with contextlib.suppress(OSError, AttributeError):  # Linux: PR_SET_PDEATHSIG
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))
    if not is_main():
        log = os.open(rank_log(output_dir, rank()), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
    import torch
    from accelerate import PartialState

    cpu = not torch.cuda.is_available()
    PartialState(cpu=cpu)
    if cpu:
        # accelerate names each CPU rank's device `cpu:0`, and transformers resumes the optimizer with that
        # map_location under several processes; torch's loader knows only `cpu`: teach it the indexed name.
        torch.serialization.register_package(
            11, lambda obj: None, lambda obj, location: obj if location.startswith("cpu:") else None
        )


def _reduce(value: int, op) -> int:
    import torch
    import torch.distributed as dist

    if not (launched() and dist.is_available() and dist.is_initialized()):
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=op)
    return int(tensor.item())


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any (one process: the flag itself)."""
    import torch.distributed as dist

    return bool(_reduce(int(flag), dist.ReduceOp.MAX))


def smallest(value: int) -> int:
    """The smallest of the ranks' values, on every rank."""
    import torch.distributed as dist

    return _reduce(value, dist.ReduceOp.MIN)


def barrier() -> None:
    import torch.distributed as dist

    if launched() and dist.is_available() and dist.is_initialized():
        dist.barrier()
