"""`umlstudio prepare-model`, `train` and `runs`, and the training worker (`train-worker`, also started
as `python -m core.training.train --worker PLAN`). core/training/ does the work."""

import json
from pathlib import Path

from core.cli.options import config_option


def add_prepare_args(parser) -> None:
    config_option(parser, "--base", "model.base", lead="which base model to prepare: ")
    parser.add_argument("--force", action="store_true", help="rebuild the cached safetensors folder")


def run_prepare(args) -> int:
    from core.training import models

    if args.base == models.EMBEDDED:
        path = str(models.prepare_embedded(force=args.force))
    else:
        path = models.resolve_base(args.base)
    seconds = models.timed_load(args.base)
    print(f"{args.base}: ready at {path} (loads in {seconds:.2f} s)")
    return 0


def add_train_args(parser) -> None:
    parser.add_argument("--config", required=True, help="the phase's YAML config, e.g. config/training_config.yaml")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set training.learning_rate=3e-5 (repeatable)",
    )
    parser.add_argument(
        "--as-phase",
        action="store_true",
        help="run a resume_from_checkpoint config that changes hyperparameters as a continue "
        "phase from that checkpoint, in a new output_dir",
    )
    config_option(
        parser,
        "--processes",
        "training.processes",
        overrides=True,
        metavar="N",
        lead="the same as --set training.processes=N: ",
        default_text="the config's, else 1",
    )
    parser.add_argument(
        "--background",
        action="store_true",
        help="start the run as a background job, as the studio does, and return at once; follow it "
        "with `umlstudio runs` or the studio (its Train page stops it)",
    )


def run_train(args) -> int:
    from core import config as cfg
    from core.training import train

    overrides = [*args.set, *([f"training.processes={args.processes}"] if args.processes is not None else [])]
    config = cfg.load(args.config, overrides)
    if args.background:
        from core import jobs
        from core.training import runs

        run = runs.detail(jobs.train(args.config, config=config, as_phase=args.as_phase))
        print(
            f"{run.name}: run {run.id} training in the background (job {run.job}); its log is "
            f"{Path(run.output_dir) / train.LOG_FILE}"
        )
        return 0
    run_id = train.prepare(config, config_path=args.config, as_phase=args.as_phase)
    return train.run_attached(run_id)


def add_worker_args(parser) -> None:
    parser.add_argument(
        "--worker", required=True, type=Path, help="<output_dir>/plan.json written by `umlstudio train`"
    )


def run_worker(args) -> int:
    from core.training import train

    return train.worker(args.worker)


def add_runs_args(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def run_runs(args) -> int:
    from core import paths
    from core.training import runs as training_runs

    runs = training_runs.list_runs()
    if args.json:
        print(json.dumps(runs, indent=1, default=str))
        return 0
    if not runs:
        print(f"no runs yet under {paths.home()} — start one with: umlstudio train --config config/quick_test.yaml")
        return 0
    header = (
        f"{'name':<22} {'kind':<8} {'parent':<16} {'status':<11} {'steps':>6} {'loss':>7} {'eval':>7} "
        f"{'lr used':>9} {'lr cfg':>9} {'tok/s':>6}  output_dir"
    )
    print(header)
    for r in runs:
        print(
            f"{r['name'][:22]:<22} {r['phase_kind']:<8} {(r['parent'] or '-')[:16]:<16} {r['status']:<11} "
            f"{r['steps']:>6} {_fmt(r['loss'], '7.4f')} {_fmt(r['eval_loss'], '7.4f')} "
            f"{_fmt(r['learning_rate_used'], '9.2e')} {_fmt(r['learning_rate_config'], '9.2e')} "
            f"{_fmt(r['tokens_per_s'], '6.0f')}  {r['output_dir']}"
        )
    return 0
