"""Background work: training runs, evaluations, comparisons, generations and exports run as jobs.

The studio never loads a model itself. A page starts a job through one typed function per kind of
work (`train`, `evaluate`, `compare`, `generate`, `export`, below: they alone build a worker's
command line) and polls it with `get` / `list_jobs`; the job keeps running through page reruns,
browser refreshes and closed tabs, and any session can pick it up again. The job folder, the
supervisor process and a worker's `Progress` are core/supervisor.py, re-exported here: `train` needs
the trainer and the trainer needs to see its jobs, so core/training/ reads core/supervisor.py and
only this module knows the kinds of work.

A training run is a job of kind "train" (from the studio, or `umlstudio train --background`): its run
row names the job (`runs.job`), and whether its worker lives, how it ended (exit code), its log and
the Stop button all come from the job. Plain `umlstudio train` runs its worker attached in the
terminal, without a job (core.training.train).
"""

from core.supervisor import (
    DONE,
    FAILED,
    FINISHED,
    JOB_ENV,
    LOST,
    RUNNING,
    STOPPED,
    Job,
    Progress,
    current,
    duration_text,
    get,
    jobs_dir,
    list_jobs,
    progress_text,
    start,
    stop,
    time_left,
)

__all__ = [
    "DONE",
    "FAILED",
    "FINISHED",
    "JOB_ENV",
    "LOST",
    "RUNNING",
    "STOPPED",
    "Job",
    "Progress",
    "compare",
    "current",
    "duration_text",
    "evaluate",
    "export",
    "generate",
    "get",
    "jobs_dir",
    "list_jobs",
    "progress_text",
    "start",
    "stop",
    "time_left",
    "train",
]


# ---- the kinds of background work: one typed function each, the only place a worker's command line is built


def train(config_path, *, config=None, as_phase: bool = False) -> str:
    """Plan one training phase from `config_path` (or from `config`, the loaded config, when the caller has
    changed it after loading; `config_path` is then where its history finds it) and start its worker as a
    job of kind "train"; return the run id. Refusals (UserError) come before anything starts.
    The command line: `core.training.train.worker_argv`, the same one `umlstudio train` runs attached."""
    from core import config as cfg
    from core.training import runs

    return runs.start_worker(config if config is not None else cfg.load(config_path), config_path, as_phase=as_phase)


def evaluate(checkpoint: str, limit: int | None = None) -> Job:
    """`umlstudio evaluate` of a checkpoint on `limit` test rows (the evaluation config's default when None)."""
    args = ["-m", "core", "evaluate", "--checkpoint", checkpoint]
    if limit is not None:
        args += ["--limit", str(int(limit))]
    return start("evaluate", args, label=checkpoint)


def decoding_flags(decoding: dict | None) -> list[str]:
    """{"repetition": "dry", "temperature": 0.7} -> ["--repetition", "dry", "--temperature", "0.7"]: the decoding
    settings (evaluation.* of core/config.py) as the commands' flags; none given, greedy."""
    return [arg for key, value in (decoding or {}).items() for arg in ("--" + key.replace("_", "-"), str(value))]


def compare(
    checkpoints: list[str], *, limit: int, max_new_tokens: int, decoding: dict | None = None, label: str = ""
) -> Job:
    """`umlstudio compare` of 2-4 checkpoints on `limit` test prompts; its HTML report is the job's compare.html."""
    models = [arg for i, checkpoint in enumerate(checkpoints) for arg in (f"--model{i + 1}", checkpoint)]
    return start(
        "compare",
        [
            "-m",
            "core",
            "compare",
            *models,
            "--limit",
            str(int(limit)),
            "--max-new-tokens",
            str(int(max_new_tokens)),
            "--out",
            "{job}/compare.html",
            *decoding_flags(decoding),
        ],
        label=label or ", ".join(checkpoints),
    )


def generate(
    checkpoint: str,
    prompt: str,
    *,
    base: str | None = None,
    diagram_type: str | None = None,
    max_new_tokens: int = 320,
    repair: bool = False,
    decoding: dict | None = None,
    label: str = "",
) -> Job:
    """One generation for the playground: its tokens stream to the job's output, its result is result.json."""
    args = [
        "-m",
        "core",
        "generate-worker",
        "--checkpoint",
        checkpoint,
        "--prompt-file",
        "{job}/prompt.txt",
        "--out",
        "{job}/result.json",
        "--max-new-tokens",
        str(int(max_new_tokens)),
    ]
    if base:
        args += ["--base", base]
    if diagram_type:
        args += ["--type", diagram_type]
    if repair:
        args += ["--repair"]
    args += decoding_flags(decoding)
    return start("generate", args, label=label or checkpoint, files={"prompt.txt": prompt})


def export(checkpoint: str, out, fmt: str, gguf_type: str, *, label: str = "") -> Job:
    """`umlstudio export` of a checkpoint into `out` as `fmt` (merged or gguf, of `gguf_type`)."""
    return start(
        "export",
        [
            "-m",
            "core",
            "export",
            "--checkpoint",
            checkpoint,
            "--out",
            str(out),
            "--format",
            fmt,
            "--gguf-type",
            gguf_type,
        ],
        label=label or f"{checkpoint} → {out}",
    )
