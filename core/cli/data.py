"""`umlstudio data` (core/data/ does the work)."""

import json
import sys

from core.cli.options import config_option
from core.errors import UserError


def add_data_args(parser) -> None:
    config_option(parser, "--dataset", "data.dataset", overrides=True)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--build",
        action="store_true",
        help="regenerate data/default from the real-prose sets (PlantUCD, US2SD, LATO) and the generator",
    )
    action.add_argument(
        "--filter",
        metavar="TYPES",
        type=str.lower,
        help="comma-separated diagram types to keep from the train split "
        "(e.g. state,er), plus a replay share of the others; written to --out",
    )
    parser.add_argument(
        "--replay-share", type=float, default=0.2, help="share of the other rows --filter keeps (default 0.2)"
    )
    parser.add_argument("--out", metavar="FILE", help="new .jsonl file --filter writes")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of --build, of the mix and of the --filter replay sample (default 0)"
    )
    config_option(
        parser,
        "--max-seq-length",
        "training.max_seq_length",
        metavar="N",
        lead="count the rows longer than N, training.max_seq_length: ",
    )


def run_data(args) -> int:
    """Print row counts per split and diagram type, the mix of each split and of the rows a phase
    trains on (default type_weights), and the rows longer than max_seq_length; or rebuild
    data/default; or write a filtered subset."""
    from core import data

    if args.out and not args.filter:
        raise UserError("--out only goes with --filter TYPES; add --filter or drop --out")
    if args.max_seq_length < 1:
        raise UserError(f"--max-seq-length {args.max_seq_length}: give a positive number of tokens, e.g. 512")
    if args.build:
        if args.dataset:
            raise UserError("--build always writes data/default; drop --dataset")
        print(
            "building data/default: PlantUCD, US2SD and LATO rows plus generated ones, every reference "
            "checked with PlantUML (about 20 s) …",
            file=sys.stderr,
            flush=True,
        )
        dataset = data.build_default_dataset(args.seed)
        if not args.json:
            print(f"rebuilt {dataset}")
    elif args.filter:
        return _filter(args)
    else:
        dataset = args.dataset or data.default_dataset_dir()
    report = data.describe(dataset, args.seed, args.max_seq_length)
    print(json.dumps(report, indent=2) if args.json else data.format_report(report))
    return 0


def _filter(args) -> int:
    from core import data, paths

    if not args.out:
        raise UserError("--filter needs --out FILE, a new .jsonl file for the subset")
    paths.out_file(args.out)  # a folder that exists, a file name, a writable place: before any work
    dataset = args.dataset or data.default_dataset_dir()
    diagram_types = [t.strip() for t in args.filter.split(",") if t.strip()]
    subset = data.filter_rows(data.load_split(dataset, "train"), diagram_types, args.replay_share, args.seed)
    path = data.write_rows(subset, args.out)
    found = data.type_counts(subset)
    summary = {"out": str(path), "rows": len(subset), "types": found}  # what --json prints
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        weak = sum(found[t] for t in diagram_types)
        print(
            f"wrote {len(subset)} rows to {path}: {weak} of {', '.join(diagram_types)} and "
            f"{len(subset) - weak} replayed rows of other types, from the train split of {dataset}"
        )
        print(data.format_counts({path.name: found}))
    return 0
