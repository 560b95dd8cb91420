#!/usr/bin/env python
"""Compare checkpoints prompt by prompt (the seed's script): `umlstudio compare` with the same arguments.

python scripts/compare_models.py --model1 base --model2 runs/phase1 [--limit N] [--out report.html]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.cli import main  # after the path, so the script runs from a checkout

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
