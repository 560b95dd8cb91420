"""`umlstudio store check` and `umlstudio store rebuild` (core/store/rebuild.py does the work)."""

from core.errors import UserError


def add_store_args(parser) -> None:
    parser.add_argument(
        "action",
        choices=("check", "rebuild"),
        help="check: say whether the store opens and what a rebuild would recover from the run "
        "folders (writes nothing; exit 1 when the store is damaged); rebuild: make runs, "
        "checkpoints and metrics again from the run folders and move the old file aside",
    )
    parser.add_argument(
        "--runs-in",
        action="append",
        default=[],
        metavar="DIR",
        help="also look for run folders under DIR (runs trained with an absolute "
        "training.output_dir outside the runs root); repeatable",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild a store that opens cleanly (what lived only in it is lost)"
    )


def run_store(args) -> int:
    from core.store import rebuild

    for folder in args.runs_in:
        from pathlib import Path

        if not Path(folder).expanduser().is_dir():
            raise UserError(f"--runs-in {folder}: no such folder — name a folder that holds run folders")
    if args.action == "check":
        report = rebuild.check(args.runs_in)
        print("\n".join(report.lines()))
        if report.problem:
            print(f"a rebuild makes {len(report.runs)} run(s) again from these folders; {report.lost()}")
        return 1 if report.problem else 0
    report = rebuild.rebuild(args.runs_in, force=args.force)
    print("\n".join(report.lines()))
    if report.moved_to:
        print(f"the old store is kept as {report.moved_to}")
    print(
        f"rebuilt {report.store}: {len(report.runs)} run(s), {sum(len(r.checkpoints) for r in report.runs)} "
        f"checkpoint(s), {sum(len(r.metrics) for r in report.runs)} metric values; {report.lost()}"
    )
    return 0
