"""The project's chosen model (the guide's step 6, "use the new model"): one checkpoint a person marks
with `umlstudio choose CHECKPOINT` or the Quality page's button. `umlstudio generate`, `umlstudio serve`
and the playground use it when no checkpoint is given, and say so ("chosen model: ...").

The store keeps the resolved checkpoint folder (core/store/chosen.py); a run folder given here means
its latest checkpoint at the time of choosing, as everywhere else."""

from dataclasses import dataclass
from pathlib import Path

from core import store
from core.errors import UserError
from core.inference import generate
from core.training import checkpoints


@dataclass(frozen=True)
class Chosen:
    checkpoint: str  # the checkpoint folder
    label: str  # 'run · step N' when the store knows its run, else the folder
    exists: bool  # the folder is still there

    def line(self) -> str:
        """What a screen says about it."""
        where = "" if self.label == self.checkpoint else f" ({self.checkpoint})"
        return f"chosen model: {self.label}{where}" + ("" if self.exists else " — its folder no longer exists")


def _labelled(checkpoint: str) -> Chosen:
    return Chosen(checkpoint, checkpoints.stored().get(checkpoint, checkpoint), Path(checkpoint).is_dir())


def choose(ref: str) -> Chosen:
    """Mark a checkpoint (or a run folder's latest) as the chosen model; its adapter must be readable."""
    if ref == checkpoints.BASE:
        raise UserError("'base' is the untrained model — choose a checkpoint folder or a run folder")
    ckpt = generate.resolve_checkpoint(ref)
    return _labelled(store.chosen.choose(str(ckpt)).checkpoint)


def current() -> Chosen | None:
    """The chosen model, or None when none is chosen."""
    found = store.chosen.get()
    return _labelled(found.checkpoint) if found else None


def clear() -> Chosen | None:
    """Forget the chosen model; return the one that was chosen."""
    found = store.chosen.clear()
    return _labelled(found.checkpoint) if found else None


def checkpoint_or_chosen(given: str | None) -> tuple[str, Chosen | None]:
    """The checkpoint to use: `given` when there is one, else the chosen model (which must still
    exist); the Chosen is returned when it was used, so the caller can say so."""
    if given:
        return given, None
    found = current()
    if found is None:
        raise UserError(
            "no --checkpoint given and no chosen model — pass --checkpoint, or choose one: umlstudio choose CHECKPOINT"
        )
    if not found.exists:
        raise UserError(
            f"the chosen model {found.checkpoint} no longer exists — pass --checkpoint, or choose another: "
            "umlstudio choose CHECKPOINT"
        )
    return found.checkpoint, found


def models_on_offer() -> tuple[list[dict], int, Chosen | None]:
    """What the playground offers (`generate.models_on_offer`), the chosen model marked in its label
    (added first when the store does not list it), the index to start on, and the chosen model."""
    offered = generate.models_on_offer()
    found = current()
    if found is None or not found.exists:
        return offered, 0, found
    for index, option in enumerate(offered):
        if option["checkpoint"] == found.checkpoint:
            offered[index] = {**option, "label": f"{option['label']} · chosen model"}
            return offered, index, found
    return (
        [{"label": f"{found.label} · chosen model", "checkpoint": found.checkpoint, "base": None}, *offered],
        0,
        found,
    )
