#!/usr/bin/env python
"""Evaluate one checkpoint (the seed's script): `umlstudio evaluate` with the same arguments.

python scripts/evaluate.py --checkpoint runs/phase1/checkpoint-300 [--dataset FILE] [--limit N] [--json]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.cli import main  # after the path, so the script runs from a checkout

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
