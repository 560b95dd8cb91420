"""`python scripts/train.py --config FILE [--set key=value ...] [--as-phase]`: the seed's command,
the same as `umlstudio train ...`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.cli import main  # after the path, so the script runs from a checkout

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
