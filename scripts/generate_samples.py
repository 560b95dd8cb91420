#!/usr/bin/env python
"""One sample diagram per diagram type (the seed's script), written into a folder.

For each diagram type in the dataset's test split, the first prompt of that type goes through
`umlstudio generate`; the PlantUML is saved as <type>.puml and, when it renders, as <type>.svg.

    python scripts/generate_samples.py [--checkpoint runs/phase1] [--out samples] [--dataset data/default]
"""

import argparse
import contextlib
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import cli, data  # noqa: E402
from core.errors import UserError  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="base", help="a checkpoint folder, a run folder or 'base' (default)")
    parser.add_argument("--out", default="samples", help="the folder to write into (default: samples)")
    parser.add_argument("--dataset", help="where the prompts come from (default: data/default, test split)")
    parser.add_argument("--base", help="the base model behind 'base' (default: smollm2-135m)")
    args = parser.parse_args(argv)
    try:
        rows = data.load_split(args.dataset or data.default_dataset_dir(), "test")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    first = {}
    for row in rows:
        first.setdefault(row["diagram_type"], row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rendered = 0
    for diagram_type in (t for t in data.DIAGRAM_TYPES if t in first):
        prompt = first[diagram_type]["prompt"]
        argv = ["generate", "--checkpoint", args.checkpoint, "--prompt", prompt, "--out", str(out / f"{diagram_type}.svg")]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = cli.main(argv + (["--base", args.base] if args.base else []))
        if code == 2:
            return 2  # bad input: the error line is already printed
        (out / f"{diagram_type}.puml").write_text(printed.getvalue())
        rendered += code == 0
        print(f"{diagram_type:<10} {'rendered' if code == 0 else 'does not render':<16} {' '.join(prompt.split())[:70]}")
    print(f"{rendered} of {len(first)} samples rendered into {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
