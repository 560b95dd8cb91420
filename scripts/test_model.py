#!/usr/bin/env python
"""Quick sanity check of one checkpoint (the seed's script): a few test prompts, one line per check
(PASS/FAIL), exit 1 when a check fails, 2 on bad input.

Checks: it loads and generates; outputs are complete (@startuml..@enduml, not cut off), valid
PlantUML, render, and have the right diagram type, each at the checkpoint's quality thresholds;
and greedy decoding gives the same output twice.

    python scripts/test_model.py [--checkpoint runs/phase1] [--limit 5]

Without --checkpoint it checks the newest checkpoint the store knows.
"""

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import cli, evaluate, generate, store  # noqa: E402


def newest_checkpoint() -> str | None:
    found = store.query("SELECT path FROM checkpoints ORDER BY created_at DESC LIMIT 1")
    return found[0]["path"] if found else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a checkpoint folder, a run folder or 'base' (default: the newest checkpoint)")
    parser.add_argument("--limit", type=int, default=5, help="test prompts to generate (default 5)")
    parser.add_argument("--dataset", help="a dataset folder or file (default: data/default)")
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint or newest_checkpoint()
    if checkpoint is None:
        print("error: no checkpoint in the store yet — train one, or pass --checkpoint (e.g. base)", file=sys.stderr)
        return 2

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["evaluate", "--checkpoint", checkpoint, "--limit", str(args.limit), "--json",
                         *(["--dataset", args.dataset] if args.dataset else [])])
    if code:
        return code
    summary = json.loads(printed.getvalue())
    quality = evaluate.quality_for(generate.resolve_checkpoint(checkpoint))
    checks = [
        ("loads and generates", summary["n"], None, summary["n"] > 0),
        ("complete (@startuml..@enduml, not cut off)", summary["complete_rate"], quality.complete_rate,
         summary["complete_rate"] >= quality.complete_rate),
        ("valid PlantUML", summary["syntax_valid_rate"], quality.valid_rate, summary["syntax_valid_rate"] >= quality.valid_rate),
        ("renders", summary["render_rate"], quality.valid_rate, summary["render_rate"] >= quality.valid_rate),
        ("right diagram type", summary["type_accuracy"], quality.type_accuracy,
         summary["type_accuracy"] >= quality.type_accuracy),
    ]
    prompt = "A customer places orders; each order has order lines."
    engine = generate.engine_for([checkpoint])
    twice = [engine.generate([prompt], checkpoint, max_new_tokens=64)[0].output for _ in range(2)]
    checks.append(("same output twice (greedy)", None, None, twice[0] == twice[1]))

    print(f"checkpoint {summary['checkpoint']} on {summary['n']} prompts of {summary['dataset']}")
    for name, value, threshold, passed in checks:
        measured = "" if value is None else f"  {value:.3g}" + (f" (needs {threshold:.3g})" if threshold is not None else "")
        print(f"{'PASS' if passed else 'FAIL'}  {name}{measured}")
    failed = sum(not passed for *_, passed in checks)
    print(f"{len(checks) - failed} of {len(checks)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
