"""Checkpoint folders: `<output_dir>/checkpoint-<step>` holding a standard PEFT adapter, the tokenizer,
the trainer state, `umlstudio.json` (resolved config, run id, step, package versions) and
`manifest.json` (the sha256 of every other file), so a backup can be verified byte for byte.

A backup is a copy in another folder (`<runs root>/backups` unless UMLSTUDIO_BACKUPS or
`--backup-dir` says where, e.g. another disk), checked file by file against the original's
manifest; the store remembers where each checkpoint's copy went. "Best" has one meaning everywhere:
the checkpoint with the lowest validation loss, a checkpoint's being the last one logged at or
before its step.
"""

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from core import paths, store
from core.errors import UserError

MANIFEST = "manifest.json"
ADAPTER_FILE = "adapter_model.safetensors"
INFO = "umlstudio.json"
BASE = "base"  # the untrained base model: a valid checkpoint name everywhere, the floor to beat
_STEP = re.compile(r"^checkpoint-(\d+)$")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(ckpt: Path) -> list[Path]:
    return sorted(p for p in ckpt.rglob("*") if p.is_file() and p.name != MANIFEST)


def manifest_text(manifest: dict[str, str]) -> str:
    """manifest.json's text; its sha256 is what the store records for a checkpoint."""
    return json.dumps(manifest, indent=1, sort_keys=True)


def computed_manifest(ckpt: Path) -> dict[str, str]:
    """The manifest of the checkpoint's files as they are now (file -> sha256)."""
    return {str(p.relative_to(ckpt)): sha256_file(p) for p in _files(Path(ckpt))}


def write_manifest(ckpt: Path) -> str:
    """Write manifest.json for every file in the checkpoint; return the manifest's own sha256."""
    ckpt = Path(ckpt)
    manifest = computed_manifest(ckpt)
    # written beside it, then renamed: a full disk never leaves a cut manifest that marks the checkpoint complete
    partial = ckpt / f".{MANIFEST}.partial"
    try:
        with open(partial, "w") as handle:
            handle.write(manifest_text(manifest))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, ckpt / MANIFEST)
    finally:
        partial.unlink(missing_ok=True)
    return sha256_file(ckpt / MANIFEST)


def adapter_shapes(weights: Path) -> dict[str, tuple]:
    """The tensor shapes in a safetensors file, read from its header without loading it (and without
    torch); UserError when the file is unreadable or truncated."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="numpy") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (OSError, SafetensorError) as exc:
        raise UserError(f"{weights} is unreadable: {exc}") from None


def read_adapter(ckpt: Path | str, where: str) -> dict:
    """The checkpoint's adapter_config.json, once both it and the weights' header read cleanly
    (a truncated or damaged file is refused here, before any run row or model load)."""
    ckpt = Path(ckpt)
    weights = ckpt / ADAPTER_FILE
    if not weights.is_file():
        raise UserError(f"{where}: {ckpt} has no {ADAPTER_FILE} — pick a complete checkpoint")
    damaged = (
        "the checkpoint is damaged: pick another checkpoint of the run, "
        f"or restore it from its backup ({backup_root()})"
    )
    try:
        adapter = json.loads((ckpt / "adapter_config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{where}: {ckpt} has no adapter_config.json — {damaged}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{where}: {ckpt / 'adapter_config.json'} is not valid JSON ({str(exc)[:120]}) — {damaged}"
        ) from None
    if not isinstance(adapter, dict):
        raise UserError(f"{where}: {ckpt / 'adapter_config.json'} holds no settings object — {damaged}")
    try:
        adapter_shapes(weights)
    except UserError as exc:
        raise UserError(f"{where}: {exc} — {damaged}") from None
    return adapter


def _imported(ckpt: Path):
    """The store's record of a checkpoint trained elsewhere (no manifest.json: `umlstudio import`), else None."""
    return None if (ckpt / MANIFEST).exists() else store.checkpoints.get(ckpt.resolve())


def manifest_of(ckpt: Path) -> dict[str, str] | None:
    """The checkpoint's manifest (file -> sha256), or None when it has none or it is unreadable.

    A checkpoint trained elsewhere has no manifest.json (`umlstudio import` writes nothing into its folder):
    its manifest is the one computed from its files, when its sha256 is the one the store recorded at
    import — None when a file changed since."""
    ckpt = Path(ckpt)
    if (imported := _imported(ckpt)) is not None:
        manifest = computed_manifest(ckpt)
        same = hashlib.sha256(manifest_text(manifest).encode()).hexdigest() == imported.manifest_sha256
        return manifest if same else None
    try:
        manifest = json.loads((ckpt / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def verify(ckpt: Path, manifest: dict[str, str] | None = None) -> list[str]:
    """Problems found checking the checkpoint against a manifest, by default its own (empty when it
    verifies). A backup is checked against the original's manifest."""
    ckpt = Path(ckpt)
    if manifest is None and _imported(ckpt) is not None:  # its manifest is computed from its files: matching the
        # sha256 recorded at import is the check, with no second pass over the files
        if manifest_of(ckpt) is None:
            return [f"{ckpt}: its files changed since `umlstudio import` read them — import its folder again"]
        return []
    manifest = manifest if manifest is not None else manifest_of(ckpt)
    if manifest is None:
        return [f"{ckpt}: no readable {MANIFEST}"]
    problems = []
    present = {str(p.relative_to(ckpt)) for p in _files(ckpt)}
    for name, digest in manifest.items():
        if name not in present:
            problems.append(f"{ckpt / name}: missing")
        elif sha256_file(ckpt / name) != digest:
            problems.append(f"{ckpt / name}: changed since the checkpoint was written")
    problems += [f"{ckpt / name}: not in the manifest" for name in sorted(present - set(manifest))]
    return problems


def make_read_only(ckpt: Path) -> None:
    """Back up a finished checkpoint against accidental overwrites: its files become read-only."""
    for path in Path(ckpt).rglob("*"):
        if path.is_file():
            os.chmod(path, path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def is_read_only(ckpt: Path) -> bool:
    writable = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    return all(not p.stat().st_mode & writable for p in Path(ckpt).rglob("*") if p.is_file())


# ---- backups ------------------------------------------------------------------------------------


def backup_root(folder=None) -> Path:
    """Where backups go: `folder`, else UMLSTUDIO_BACKUPS, else `<runs root>/backups`."""
    chosen = folder or os.environ.get("UMLSTUDIO_BACKUPS")
    return Path(chosen).expanduser().resolve() if chosen else paths.home() / "backups"


def check_backup_root(root: Path) -> None:
    """Refuse a backup folder that is a file or cannot be written, before anything is copied."""
    root = Path(root)
    paths.check_not_system(root, "backup folder", "pick a folder of yours with --backup-dir DIR or UMLSTUDIO_BACKUPS")
    if root.exists() and not root.is_dir():
        raise UserError(f"backup folder {root} is a file — name a folder (--backup-dir DIR or UMLSTUDIO_BACKUPS)")
    existing = next(p for p in (root, *root.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"backup folder {root}: {existing} is not writable — "
            "pick a writable folder with --backup-dir DIR or UMLSTUDIO_BACKUPS"
        )


def backup_target(ckpt: Path, root: Path) -> Path:
    """`<root>/<run folder>-<short hash of its path>/<checkpoint-N>`: two runs never share a target."""
    run_dir = Path(ckpt).resolve().parent
    tag = hashlib.sha256(str(run_dir).encode()).hexdigest()[:8]
    return Path(root) / f"{run_dir.name}-{tag}" / Path(ckpt).name


def backup(ckpt: Path, root: Path | None = None) -> Path:
    """Copy a checkpoint that matches its manifest to the backup folder, verify the copy against
    that manifest, make both read-only, and record where the copy is. Returns the copy's folder.

    An existing verified copy is kept; a copy that no longer verifies is replaced."""
    ckpt = Path(ckpt).resolve()
    manifest = manifest_of(ckpt)
    problems = verify(ckpt, manifest)
    if problems:
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise UserError(
            f"{ckpt} does not match its manifest ({problems[0]}{more}) — "
            "it changed since it was written: back up another checkpoint"
        )
    root = backup_root(root)
    check_backup_root(root)
    target = backup_target(ckpt, root)
    if not (target.exists() and not verify(target, manifest)):
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            shutil.copytree(ckpt, partial, dirs_exist_ok=True)
            problems = verify(partial, manifest)
            if problems:
                raise UserError(
                    f"the copy of {ckpt} in {partial} does not match the manifest ({problems[0]}) — "
                    f"check the disk of {root}"
                )
            if target.exists():
                shutil.rmtree(target)
            partial.rename(target)
        finally:
            if partial.exists():
                shutil.rmtree(partial)
        make_read_only(target)
    if (ckpt / MANIFEST).exists():  # ours; a folder trained elsewhere is left as it is
        make_read_only(ckpt)
    store.acknowledgements.add(str(ckpt), "backup", str(target))
    return target


def backup_of(ckpt: Path) -> tuple[Path | None, list[str]]:
    """The recorded backup copy of a checkpoint and the problems found verifying it against the
    original's manifest: (None, []) when none was made; (copy, []) when it verifies."""
    found = store.acknowledgements.get(str(Path(ckpt).resolve()), "backup")
    if found is None:
        return None, []
    target = Path(found.note)
    if not target.is_dir():
        return target, [f"{target}: gone"]
    manifest = manifest_of(ckpt)
    return target, verify(target, manifest) if manifest is not None else [
        f"{ckpt}: no readable {MANIFEST} to check the copy against"
    ]


# ---- checkpoints of a run -----------------------------------------------------------------------


def disk_full(exc: BaseException, output_dir: Path) -> str | None:
    """The one line for a run stopped by a full disk (a checkpoint save or a store write), or None when
    `exc` is not that. torch says only "file write failed", so a write error while the run folder's disk
    has under 4 MiB left counts as well. The latest complete checkpoint is untouched; the one being
    written has no manifest, so a resume removes it."""
    from core.errors import no_space
    from core.store.damage import StoreFull

    output_dir = Path(output_dir)
    try:
        low = shutil.disk_usage(output_dir).free < 4 * 1024 * 1024
    except OSError:
        low = False
    if not (no_space(exc) or (low and isinstance(exc, (OSError, RuntimeError)))):
        return None
    where = f"the store ({exc.path})" if isinstance(exc, StoreFull) else f"{output_dir}"
    saved = [c for c in list_checkpoints(output_dir) if (c / MANIFEST).is_file()]
    resume = (
        (
            f"its latest complete checkpoint {saved[-1].name} is whole — free space, "
            f"then resume: umlstudio train --config {output_dir / 'config.yaml'} --set "
            f"training.resume_from_checkpoint={output_dir}"
        )
        if saved
        else "it had no complete checkpoint yet — free space, "
        f"then start it again (its folder {output_dir} can be reused)"
    )
    return f"the disk is full: training stopped while writing {where}; {resume}"


def step_of(ckpt: Path | str) -> int | None:
    match = _STEP.match(Path(ckpt).name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: Path | str) -> list[Path]:
    """The run's checkpoint folders, oldest step first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and step_of(p) is not None]
    return sorted(found, key=lambda p: step_of(p) or 0)  # each has a step


def stored() -> dict[str, str]:
    """Checkpoints the store knows that still exist on disk, newest first: path → 'run · step N'."""
    return {c.path: f"{run} · step {c.step}" for c, run in store.checkpoints.with_run_names() if Path(c.path).is_dir()}


def best_of(run_ids) -> dict[str, tuple[Path, float]]:
    """Each run's best checkpoint that still exists and its validation loss (runs without one are left out).

    A checkpoint's validation loss is the last eval_loss logged at or before its step; the best has the lowest."""
    run_ids = list(run_ids)
    if not run_ids:
        return {}
    losses: dict[str, list[tuple[int, float]]] = {}
    for point in store.metrics.curve(run_ids, ["eval_loss"]):
        losses.setdefault(point.run_id, []).append((point.step, point.value))
    best: dict[str, tuple[Path, float]] = {}
    for ckpt in store.checkpoints.of_runs(run_ids):
        before = [value for step, value in losses.get(ckpt.run_id, []) if step <= ckpt.step]
        path = Path(ckpt.path)
        if before and path.is_dir() and (ckpt.run_id not in best or before[-1] < best[ckpt.run_id][1]):
            best[ckpt.run_id] = (path, before[-1])
    return best


def best_paths() -> set[str]:
    """The stored checkpoints that are their run's best (see best_of), as the paths `stored()` lists."""
    return {str(path) for path, _ in best_of(store.checkpoints.run_ids()).values()}


def best(run: store.Run) -> tuple[Path, float] | None:
    """The run's best checkpoint and its validation loss (see best_of); None when none has a validation loss."""
    return best_of([run.id]).get(run.id)


def info(ckpt: Path | str) -> dict:
    path = Path(ckpt) / INFO
    return json.loads(path.read_text()) if path.is_file() else {}


def lineage(ckpt: Path | str) -> tuple[str | None, dict]:
    """The run that wrote a checkpoint and the config it trained with: its umlstudio.json's, or for a
    checkpoint trained elsewhere (no umlstudio.json) the imported run's, with the config the import
    reconstructed (`umlstudio import`)."""
    written = info(ckpt)
    if written:
        return written.get("run_id"), written.get("config") or {}
    known = store.checkpoints.get(Path(ckpt).resolve())
    run = store.runs.get(known.run_id) if known else None
    return (run.id, run.config or {}) if run else (None, {})


def resolve(ref: str) -> Path | str:
    """'base', a checkpoint folder, or a run folder (meaning its latest checkpoint).

    Relative paths are tried from the current folder first, then under the runs root."""
    if ref == BASE:
        return BASE
    candidates = [Path(ref).expanduser()]
    if not candidates[0].is_absolute():
        candidates.append(paths.home() / ref)
    for path in candidates:
        if (path / "adapter_config.json").is_file():
            return path.resolve()
        if path.is_dir():
            ckpts = list_checkpoints(path)
            if ckpts:
                return ckpts[-1].resolve()
            raise UserError(
                f"{path}: a folder without checkpoints — "
                "pass a checkpoint-<step> folder, a run folder that has one, or 'base'"
            )
    raise UserError(
        f"checkpoint '{ref}' not found (looked in {', '.join(str(c) for c in candidates)}) — "
        "pass a checkpoint-<step> folder, a run folder, or 'base'"
    )
