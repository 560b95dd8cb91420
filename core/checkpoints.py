"""Checkpoint folders: `<output_dir>/checkpoint-<step>` holding a standard PEFT adapter, the tokenizer,
the trainer state, `umlstudio.json` (resolved config, run id, step, package versions) and
`manifest.json` (the sha256 of every other file), so a backup can be verified byte for byte.
"""

import hashlib
import json
import os
import re
import stat
from pathlib import Path

from core import paths, store
from core.errors import UserError

MANIFEST = "manifest.json"
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


def write_manifest(ckpt: Path) -> str:
    """Write manifest.json for every file in the checkpoint; return the manifest's own sha256."""
    ckpt = Path(ckpt)
    manifest = {str(p.relative_to(ckpt)): sha256_file(p) for p in _files(ckpt)}
    (ckpt / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return sha256_file(ckpt / MANIFEST)


def verify(ckpt: Path) -> list[str]:
    """Problems found checking the checkpoint against its manifest (empty when it verifies)."""
    ckpt = Path(ckpt)
    if not (ckpt / MANIFEST).is_file():
        return [f"{ckpt}: no {MANIFEST}"]
    manifest = json.loads((ckpt / MANIFEST).read_text())
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


def step_of(ckpt: Path) -> int | None:
    match = _STEP.match(Path(ckpt).name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: Path) -> list[Path]:
    """The run's checkpoint folders, oldest step first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and step_of(p) is not None]
    return sorted(found, key=step_of)


def stored() -> dict[str, str]:
    """Checkpoints the store knows that still exist on disk, newest first: path → 'run · step N'."""
    rows = store.query("SELECT c.path, c.step, coalesce(r.name, c.run_id) AS run FROM checkpoints c "
                       "LEFT JOIN runs r ON r.id = c.run_id ORDER BY c.created_at DESC")
    return {r["path"]: f"{r['run']} · step {r['step']}" for r in rows if Path(r["path"]).is_dir()}


def info(ckpt: Path) -> dict:
    path = Path(ckpt) / INFO
    return json.loads(path.read_text()) if path.is_file() else {}


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
            raise UserError(f"{path}: a folder without checkpoints — pass a checkpoint-<step> folder, a run folder that has one, or 'base'")
    raise UserError(f"checkpoint '{ref}' not found (looked in {', '.join(str(c) for c in candidates)}) — pass a checkpoint-<step> folder, a run folder, or 'base'")
