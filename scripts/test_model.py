#!/usr/bin/env python
"""Quick sanity check of one checkpoint (the seed's script; `umlstudio test-model`): a few test
prompts, one line per check (PASS/FAIL), exit 1 when a check fails, 2 on bad input.

Checks: it loads and generates; outputs are complete (@startuml..@enduml, not cut off), valid
PlantUML, render, and have the right diagram type, each at the checkpoint's quality thresholds;
and greedy decoding gives the same output twice.

    python scripts/test_model.py [--checkpoint runs/phase1] [--limit 5]

Without --checkpoint it checks the newest checkpoint the store knows.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.cli import main  # after the path, so the script runs from a checkout

if __name__ == "__main__":
    sys.exit(main(["test-model", *sys.argv[1:]]))
