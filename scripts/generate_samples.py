#!/usr/bin/env python
"""One sample diagram per diagram type (the seed's script), written into a folder: `umlstudio samples`.

For each diagram type in the dataset's test split, the first prompt of that type goes through
`umlstudio generate`; the PlantUML is saved as <type>.puml and, when it renders, as <type>.svg.

    python scripts/generate_samples.py [--checkpoint runs/phase1] [--out samples] [--dataset data/default]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.cli import main  # after the path, so the script runs from a checkout

if __name__ == "__main__":
    sys.exit(main(["samples", *sys.argv[1:]]))
