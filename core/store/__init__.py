"""The DuckDB store: runs, metrics, checkpoints, evaluations, generations, renders, acknowledgements, the
chosen model.

Every SQL statement of the project is in this package; the rest of core asks its named functions,
one module per table (or pair of tables), and gets typed rows (frozen dataclasses) back:

    store.runs          Run: create, update, get, for_output_dir, named, with_status, with_metric, ...
    store.metrics       Point, Sample: log, delete_after, curve, latest, value_at, maxima, ...
    store.checkpoints   Checkpoint, OnCurve: record, get, newest, of_runs, on_curves, ...
    store.evaluations   Evaluation, Generation: add, add_generations, latest_of, newest_outputs, ...
    store.renders       Render: get, put
    store.acknowledgements  Acknowledgement: add, get
    store.chosen        Chosen: choose, get, clear (the project's chosen model)

`store.db` holds the connection (an exclusive flock on a sidecar lock file, one short-lived
connection and transaction per operation) and the ordered migrations; `session()` shares one
connection across a block of reads. `query_for_tests` runs any read query, for tests and diagnostics.
"""

from core.store import acknowledgements, checkpoints, chosen, db, evaluations, metrics, renders, runs
from core.store.db import MIGRATIONS, connect, counts, load_frames, migrate, new_id, now, query_for_tests, session
from core.store.runs import Run

__all__ = [
    "MIGRATIONS",
    "Run",
    "acknowledgements",
    "checkpoints",
    "chosen",
    "connect",
    "counts",
    "db",
    "evaluations",
    "load_frames",
    "metrics",
    "migrate",
    "new_id",
    "now",
    "query_for_tests",
    "renders",
    "runs",
    "session",
]
