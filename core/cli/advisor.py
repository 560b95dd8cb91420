"""`umlstudio advise` and `umlstudio checklist` (core/advisor/ does the work)."""

import json
from dataclasses import asdict
from pathlib import Path


def add_advise_args(parser) -> None:
    parser.add_argument(
        "--run",
        dest="run_ref",
        required=True,
        metavar="DIR_OR_NAME",
        help="the run to judge: its id, name or output folder",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="NEXT.yaml",
        help="where to write the proposed config (default: <runs root>/<new run name>.yaml)",
    )
    parser.add_argument(
        "--backup",
        action="store_true",
        help="copy the run's latest and best checkpoints to the backup folder, verify the copies "
        "against their manifests and make both read-only",
    )
    parser.add_argument(
        "--backup-dir",
        type=Path,
        metavar="DIR",
        help="where --backup copies to (default: $UMLSTUDIO_BACKUPS, else <runs root>/backups)",
    )


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_advise(args) -> int:
    from core import paths
    from core.advisor import advise
    from core.training import checkpoints, estimate

    out = paths.out_file(args.out, "--out").resolve() if args.out else None  # checked before any work
    if args.backup:
        checkpoints.check_backup_root(checkpoints.backup_root(args.backup_dir))
    run = advise.find_run(args.run_ref)
    diagnosis = advise.diagnose(run)
    report: dict = {
        "run": {"id": run.id, "name": run.name, "output_dir": run.output_dir},
        "diagnosis": diagnosis.to_dict(),
    }
    if args.backup:
        report["backup"] = advise.backup_run(run, args.backup_dir)
    if diagnosis.scenario is not None:
        proposal, diff = advise.propose(run, diagnosis)
        how_long = estimate.estimate(proposal)
        path = out or paths.home() / f"{proposal.name}.yaml"
        advise.write_proposal(proposal, diff, diagnosis, run, how_long, path)
        report["proposal"] = {
            "config_path": str(path),
            "output_dir": proposal.training.output_dir,
            "diff": diff,
            "estimate": asdict(how_long),
        }
    if args.json:
        print(json.dumps(report, indent=1, default=str))
        return 0
    print(f"run '{run.name}' ({run.id}): scenario {diagnosis.scenario or '-'}, {diagnosis.name}")
    print(f"  {diagnosis.message}")
    for fit in diagnosis.evidence["fits"]:
        print(f"  {advise.Fit(**fit).describe()}")
    for key in ("train_drop", "val_min_step", "gap_at_min", "gap_now", "validation_note"):
        if key in diagnosis.evidence:
            value = diagnosis.evidence[key]
            print(f"  {key}: {value:.3g}" if isinstance(value, float) else f"  {key}: {value}")
    for line in report.get("backup", []):
        print(f"backup: {line}")
    if "proposal" in report:
        print(f"next phase: {report['proposal']['output_dir']}")
        for key, (old, new) in report["proposal"]["diff"].items():
            print(f"  {key}: {_shown(old)} -> {_shown(new)}")
        print(f"time: {how_long.describe()}")
        print(f"wrote {path} — check it: umlstudio checklist --config {path}; run it: umlstudio train --config {path}")
    return 0


def add_checklist_args(parser) -> None:
    parser.add_argument("--config", required=True, type=Path, metavar="NEXT.yaml", help="the phase's YAML config")
    parser.add_argument("--json", action="store_true", help="print the items as JSON")


def run_checklist(args) -> int:
    """Exit 0 when every item passes, 1 when some fail (2, via UserError, for bad input)."""
    from core import config as configs
    from core.advisor import checklist

    items = checklist.check(configs.load(args.config))
    if args.json:
        print(json.dumps([asdict(item) for item in items], indent=1))
    else:
        for item in items:
            print(f"[{'x' if item.passed else ' '}] {item.title}: {item.why}")
    return 0 if all(item.passed for item in items) else 1
