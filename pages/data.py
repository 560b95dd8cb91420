"""Data: browse a dataset (the default one, a saved subset, or your own file or saved `datasets` folder,
with the shape and columns it was read from and the rows left out), count it per diagram type and
category, see its mix (types, sources, real vs generated, for each split and for the rows a phase trains
on) and its rows longer than max_seq_length, see the weak areas of a run's best checkpoint, and save a
filtered subset (weak types plus a replay share) for the next phase."""

from collections import Counter
from pathlib import Path

import pandas as pd
import streamlit as st

from core import data, paths
from core.advisor import advise
from core.config import QualityConfig
from core.errors import UserError
from core.evaluation import evaluate
from core.studio import ui
from core.training import checkpoints, runs

st.title("Data")


@st.cache_data(show_spinner=False, max_entries=16)
def rows_of(dataset: str, split: str, stamp: float) -> pd.DataFrame:
    """One split as a table (cached until a file changes: `stamp` is `data.stamp`)."""
    return pd.DataFrame(data.load_split(dataset, split))


@st.cache_data(show_spinner="Counting rows and tokens …", max_entries=16)
def report_of(dataset: str, stamp: float) -> dict:
    """`umlstudio data`'s report of the dataset (cached until a file changes)."""
    return data.describe(dataset)


def mix_frame(table: dict, key: str) -> pd.DataFrame:
    return pd.DataFrame(table[key]).T.rename_axis(key)


saved = sorted((paths.home() / "datasets").glob("*.jsonl"))
choices = [str(data.default_dataset_dir())] + [str(p) for p in saved]
dataset = st.selectbox(
    "Dataset",
    choices,
    help="the default dataset, or a subset saved below (under the runs root)",
    format_func=lambda p: f"{Path(p).name} (default)" if p == choices[0] else Path(p).name,
)
own = st.text_input(
    "Or your own data",
    placeholder="a .jsonl, .csv, .json or .parquet file, or a folder saved by datasets",
    help="prompt/completion, instruction/input/output, messages or conversations, or a text column holding a "
    "@startuml block are recognised; name other columns in a config's data.columns",
).strip()
if own:
    dataset = own
elif not Path(dataset).exists():
    st.info(
        "The default dataset is not built yet. It is made from the real-prose sets shipped in `data/` "
        "(PlantUCD class, US2SD sequence, LATO activity) plus generated rows, split by source."
    )
    if st.button("Build the default dataset", type="primary"):
        with st.spinner("Building data/default …"):
            data.build_default_dataset()
        st.rerun()
    st.stop()

try:
    report = report_of(dataset, data.stamp(dataset))
except UserError as exc:
    st.error(str(exc))
    st.stop()
table = report["counts"]
if own or any(m["shape"] != "ours" or m["left_out"] for m in report["mapped"].values()):
    st.subheader("How it was read")
    for name, mapped in report["mapped"].items():
        left_out = ", ".join(
            f"{n} with {why} (first: {mapped['first_left_out'][why]})" for why, n in mapped["left_out"].items()
        )
        st.markdown(
            f"**{name}**: {mapped['shape']} · {data.columns_in_words(mapped['columns'])} · "
            f"{mapped['kept']} of {mapped['read']} rows kept" + (f" · left out: {left_out}" if left_out else "")
        )
        st.dataframe(
            pd.DataFrame(mapped["examples"])[["prompt", "plantuml", "diagram_type"]], hide_index=True, width="stretch"
        )
counts = pd.DataFrame(table).T
counts["total"] = counts.sum(axis=1)
st.subheader("Rows per split and diagram type")
st.dataframe(counts, width="stretch")

st.subheader("Mix")
st.caption(
    "Rows and shares per diagram type, per source (plantucd, us2sd, lato: real prose; gen: generated) "
    "and by origin, for each split and for the train rows as a phase sees them (`data.mix` with the "
    "config's `data.type_weights`)."
)
mixes = {**report["mix"], "train as a phase sees it": report["phase_mix"]}
tabs = st.tabs(list(mixes))
for tab, mix in zip(tabs, mixes.values()):
    left, middle, right = tab.columns(3)
    left.dataframe(mix_frame(mix, "type"), width="stretch")
    middle.dataframe(mix_frame(mix, "family"), width="stretch")
    right.dataframe(mix_frame(mix, "origin"), width="stretch")
long = report["long"]
limit = long["max_seq_length"]
per_split = {name: entry for name, entry in long.items() if isinstance(entry, dict)}
st.caption(
    f"Longer than {limit} tokens, prompt + answer ({next(iter(per_split.values()))['how']}): "
    + "; ".join(
        f"{name} {entry['cut']} of {entry['rows']} (the trainer cuts their answers; "
        f"{entry['prompt_only']} with a prompt that fills {limit} alone)"
        for name, entry in per_split.items()
    )
)
if report["manifest"]:
    st.caption(
        "Left out when built (references PlantUML rejects): "
        + ", ".join(
            f"{name} {entry['rejected_by_plantuml']} of {entry['read']}"
            for name, entry in report["manifest"]["families"].items()
        )
    )

splits = list(table)
split = st.segmented_control("Split", splits, default="train" if "train" in splits else splits[0]) or splits[0]
rows = rows_of(dataset, split if split in data.SPLITS else "train", data.stamp(dataset))

st.subheader("Categories")
by_category = rows.groupby(["category", "diagram_type"]).size().unstack(fill_value=0)
by_category["total"] = by_category.sum(axis=1)
st.dataframe(by_category.sort_values("total", ascending=False), width="stretch", height=240)

st.subheader("Browse")
left, middle, right = st.columns([2, 2, 3])
types = left.multiselect("Diagram types", sorted(rows["diagram_type"].unique()))
categories = middle.multiselect("Categories", sorted(rows["category"].unique()))
search = right.text_input("Search the prompts", placeholder="e.g. invoice")
shown = rows
if types:
    shown = shown[shown["diagram_type"].isin(types)]
if categories:
    shown = shown[shown["category"].isin(categories)]
if search:
    shown = shown[shown["prompt"].str.contains(search, case=False, regex=False)]
st.caption(f"{len(shown)} of {len(rows)} rows")
picked = st.dataframe(
    shown[["prompt", "diagram_type", "category", "source"]],
    hide_index=True,
    width="stretch",
    height=280,
    on_select="rerun",
    selection_mode="single-row",
    key="browse",
)
if picked.selection.rows:
    row = shown.iloc[picked.selection.rows[0]]
    source_col, diagram_col = st.columns(2)
    source_col.markdown(f"**Prompt.** {row['prompt']}")
    source_col.code(row["plantuml"], language=None, line_numbers=True)
    ui.show_diagram(diagram_col, row["plantuml"], "the reference")

st.subheader("Weak areas of the best checkpoint")
evaluations = evaluate.latest_evaluations()
weak: list[str] = []
judged = [r for r in sorted(runs.table(), key=lambda r: r["created_at"], reverse=True) if r["best_checkpoint"]]
if not judged:
    st.info(
        "No checkpoint with a validation loss yet: train a run (the quick test on the Train page saves two), "
        "then evaluate its best checkpoint to see which diagram types the model gets wrong."
    )
else:
    first = next((i for i, r in enumerate(judged) if r["best_checkpoint"] in evaluations), 0)
    run = st.selectbox(
        "Run",
        judged,
        index=first,
        format_func=lambda r: (
            f"{r['name']} · best checkpoint step {checkpoints.step_of(r['best_checkpoint'])}"
            + ("" if r["best_checkpoint"] in evaluations else " (not evaluated)")
        ),
        help="a run's best checkpoint is the one with the lowest validation loss (the one a next phase starts from)",
    )
    evaluation = evaluations.get(run["best_checkpoint"])
    if evaluation is None:
        st.info(
            f"The best checkpoint of {run['name']} (`{run['best_checkpoint']}`) has no evaluation yet: evaluate it "
            "(Quality checklist page, or `umlstudio evaluate`) to see its weak diagram types."
        )
    else:
        split_by_type = advise.per_type_split(evaluation.summary.get("per_type"), QualityConfig())
        st.caption(
            f"`{evaluation.checkpoint}` on {evaluation.n} rows, {evaluation.created_at:%Y-%m-%d %H:%M}; "
            f"thresholds from the default quality settings"
        )
        if split_by_type:
            per_type = pd.DataFrame(split_by_type["types"]).T
            per_type["failing"] = per_type["failing"].map(
                lambda names: ", ".join(ui.METRIC_WORDS.get(n, n) for n in names) or "—"
            )
            st.dataframe(per_type.rename(columns=ui.METRIC_WORDS).round(3).fillna("—"), width="stretch")
            weak = split_by_type["weak_types"]
            st.markdown(
                f"**Weak:** {', '.join(weak) or 'none'} · "
                f"**good:** {', '.join(split_by_type['strong_types']) or 'none'}"
                + (
                    f" · too few rows to judge: {', '.join(split_by_type['too_few_rows'])}"
                    if split_by_type["too_few_rows"]
                    else ""
                )
            )
        else:
            st.info("That evaluation has no per-type metrics.")

st.subheader("Save a filtered subset for the next phase")
with st.form("subset"):
    present = [t for t in data.DIAGRAM_TYPES if table.get("train", {}).get(t)] or list(data.DIAGRAM_TYPES)
    weak_here = [t for t in weak if t in present]
    focus = st.multiselect(
        "Diagram types to focus on",
        present,
        default=weak_here if len(weak_here) < len(present) else [],
        help="a subset: the weak types (preselected when some types are good), not every type",
    )
    replay = st.slider("Replay share of the other types (against forgetting)", 0.0, 1.0, advise.REPLAY_SHARE, 0.05)
    seed = st.number_input("Seed of the replay sample", value=0, step=1)
    name = st.text_input("File name", value="focus")
    if st.form_submit_button("Save subset", type="primary"):
        try:
            if set(focus) >= set(present):
                raise UserError(
                    f"every diagram type is chosen, so the subset would be the whole training set — "
                    f"keep only the weak ones (of {', '.join(present)})"
                )
            subset = data.filter_rows(data.load_split(dataset, "train"), focus, replay, int(seed))
            path = data.write_rows(subset, paths.home() / "datasets" / f"{Path(name).stem}.jsonl")
        except UserError as exc:
            st.error(str(exc))
        else:
            found = Counter(r["diagram_type"] for r in subset)
            st.success(f"Wrote {len(subset)} rows to `{path}` ({', '.join(f'{t} {n}' for t, n in found.items())}).")
            st.markdown("Train the next phase on it with:")
            st.code(f"data:\n  train_file: {path}", language="yaml")
