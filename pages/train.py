"""Train: start a phase from a preset or an earlier run's config, edit it with the CLI's validator
inline, run it as a background worker (it outlives the browser tab), watch its progress, stop it."""

import tempfile
from pathlib import Path

import streamlit as st
import yaml

from core import config, jobs, paths, store
from core.advisor import checklist
from core.errors import UserError
from core.studio import ui
from core.training import checkpoints, distributed, plan, runs

QUICK_TEST = paths.CONFIG_DIR / "quick_test.yaml"

st.title("Train")
if "started" in st.session_state:
    run = runs.detail(st.session_state.pop("started"))
    st.success(f"Started **{run.name}** in the background (run {run.id}); its curves are on the Runs page.")


def validate(text: str) -> tuple[config.Config | None, list[str]]:
    """The editor's YAML through the same loader and validator as `umlstudio train --config`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text)
        try:
            loaded = config.load(path)
        except UserError as exc:
            return None, [
                line.replace(f"{path}:", "line ").replace(str(path), "config") for line in str(exc).splitlines()
            ]
    if loaded.phase.continue_from:  # a phase from a checkpoint that is not there is not a valid phase
        try:
            checkpoints.resolve(loaded.phase.continue_from)
        except UserError as exc:
            return None, [f"phase.continue_from: {exc}"]
    return loaded, []


def start(cfg: config.Config, text: str | None = None) -> None:
    """Write the config where the run's history can find it, then start its worker as a background job."""
    folder = paths.home() / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cfg.name}-{store.new_id()[:6]}.yaml"
    if text is None:
        config.save(cfg, path)
    else:
        path.write_text(text)
    try:
        run_id = jobs.train(path, config=cfg)
    except UserError as exc:
        st.error(str(exc))
        return
    st.session_state["started"] = run_id
    st.rerun()


active = runs.active()


@st.fragment(run_every=2 if active else None)
def training_now():
    shown = False
    for run in active:
        now = runs.detail(run.id)
        if now.status not in ("created", "running"):
            st.rerun()  # it ended: redraw the page without it
        shown = True
        with st.container(border=True):
            head, button = st.columns([5, 1])
            head.markdown(f"**{now.name}** · {runs.kind_in_words(now)} · `{now.output_dir}`")
            if button.button("Stop", key=f"stop-{now.id}", help="stops after the current step, with a checkpoint"):
                runs.stop_worker(now.id)
                st.toast(f"Stopping {now.name}: it saves a checkpoint at the end of this step.")
            done, text = runs.progress(run)
            st.progress(done or 0.0, text=text)
            with st.expander("worker log"):
                st.code(runs.log_tail(now, 3000) or "(empty)", language=None)
    if shown:
        st.caption("Training runs in a background worker: closing or refreshing the page does not stop it.")


if active:
    st.subheader("Training now")
    training_now()

st.subheader("Quick test")
st.write(
    f"A hundred optimizer steps on the embedded SmolLM2-135M-Instruct (`{QUICK_TEST.relative_to(paths.ROOT)}`): it "
    "shows the whole loop (training, checkpoints, curves, evaluation) working on this machine before a long run."
)
quick_name = config.load(QUICK_TEST).name if QUICK_TEST.is_file() else None
quick_running = [r.name for r in active if quick_name and (r.name == quick_name or r.name.startswith(f"{quick_name}-"))]
if st.button(
    "Quick test (≈100 steps)",
    type="primary",
    disabled=not QUICK_TEST.is_file() or bool(quick_running),
    help=f"{quick_running[0]} is training: wait for it, or stop it above" if quick_running else None,
):
    quick = config.load(QUICK_TEST)
    folder, name, n = quick.training.output_dir, quick.name, 1
    while paths.resolve_output_dir(quick.training.output_dir).exists():  # every quick test gets its own folder
        n += 1
        quick.training.output_dir, quick.run_name = f"{folder}_{n}", f"{name}-{n}"
    start(quick)
if not QUICK_TEST.is_file():
    st.warning(
        f"{QUICK_TEST} is missing: the quick test preset ships with the project — restore it from the repository."
    )

st.subheader("Start a phase")
presets = sorted(paths.CONFIG_DIR.glob("*.yaml"))
proposals = sorted(paths.home().glob("*.yaml"), key=lambda p: p.stat().st_mtime, reverse=True)
earlier = sorted(runs.table(), key=lambda r: r["created_at"], reverse=True)
sources = ["a preset"] + (["a proposal"] if proposals else []) + (["an earlier run's config"] if earlier else [])
kind = st.radio(
    "Start from",
    sources,
    horizontal=True,
    help="presets ship in config/; proposals are next phases written by the Pre-continue checklist page "
    "or `umlstudio advise`; an earlier run's config is its exact resolved config",
)
if kind == "an earlier run's config":
    picked = st.selectbox("Run", earlier, format_func=lambda r: f"{r['name']} ({r['created_at']:%Y-%m-%d %H:%M})")
    source_key, initial = f"run:{picked['id']}", yaml.safe_dump(runs.detail(picked["id"]).config, sort_keys=False)
else:
    files = presets if kind == "a preset" else proposals
    if not files:
        st.info(
            f"No presets in {paths.CONFIG_DIR}: they ship with the project — restore the folder from the repository."
        )
        st.stop()
    default = next((i for i, p in enumerate(files) if p.name == "training_config.yaml"), 0)
    chosen = st.selectbox(kind.removeprefix("a ").capitalize(), files, index=default, format_func=lambda p: p.name)
    source_key, initial = f"file:{chosen}", chosen.read_text()

st.html(
    "<style>.st-key-yaml_editor textarea { font-family: 'Source Code Pro', monospace; font-size: 0.85rem; }</style>"
)
text = st.container(key="yaml_editor").text_area(
    "Config (YAML) — checked as you edit, with the same validator as `umlstudio train`",
    initial,
    height=420,
    key=f"editor:{source_key}",
)
cfg, problems = validate(text)
if problems:
    st.error("**The config does not validate:**\n\n" + "\n".join(f"- {line}" for line in problems))
    st.stop()

t = cfg.training
amount = f"{t.max_steps} steps" if t.max_steps > 0 else f"{t.num_train_epochs:g} epoch(s)"
st.success(
    f"Valid: **{cfg.name}** — {amount} at learning rate {t.learning_rate:g}, LoRA r {cfg.lora.r} / alpha "
    f"{cfg.lora.lora_alpha}, into `{paths.resolve_output_dir(t.output_dir)}`"
    + (f", continuing from `{cfg.phase.continue_from}`" if cfg.phase.continue_from else "")
)

gpus = distributed.gpu_count()
if gpus > 1:  # more than one GPU: DDP, one process per GPU, with the peft backend (unsloth's open build is single-GPU)
    cfg.training.processes = st.number_input(
        "Processes (one per GPU; DDP with the peft backend)",
        1,
        gpus,
        min(t.processes, gpus),
        key=f"processes:{source_key}",
    )
ready = True
if cfg.phase.continue_from:
    st.markdown("**Pre-continue checklist** — a continue phase starts only when every item passes, or with a reason.")
    items = checklist.check(cfg)
    for item in items:
        st.markdown(ui.item_line(item.passed, item.title, item.why))
    if not all(item.passed for item in items):
        reason = st.text_input(
            "Override reason (stored with the run)",
            key=f"override:{source_key}",
            placeholder="why start although some items fail",
        )
        cfg.phase.override_reason = reason.strip() or None
        ready = bool(cfg.phase.override_reason)
        st.caption(
            "The Pre-continue checklist page shows the parent run's diagnosis and loss curve, and records "
            "that you checked it."
        )
if ready:  # what the phase will do, as its worker will be told (its plan.json); a refusal disables Start
    try:
        planned = plan.plan(cfg)
    except UserError as exc:
        st.error(str(exc))
        ready = False
    else:
        st.markdown(
            f"**The plan** — a {planned.kind} phase into `{planned.output_dir}`: {planned.train_rows:,} training rows "
            f"(after the type mix), {planned.eval_rows} validation rows scored at each evaluation, micro-batches of "
            f"{planned.micro_batch}; time {planned.estimate.describe()}"
        )
out = paths.resolve_output_dir(t.output_dir)
same = [r.name for r in active if paths.resolve_output_dir(r.output_dir) == out]
if same:
    st.info(f"**{same[0]}** is training into `{out}`: Start comes back when it has finished or been stopped.")
if st.button("Start training", type="primary", disabled=not ready or bool(same), key="start"):
    start(cfg, None if cfg.phase.override_reason else text)
