"""`umlstudio import`: adopt a run trained elsewhere (core/training/adopt.py does the work)."""

import json
from pathlib import Path


def add_import_args(parser) -> None:
    parser.add_argument(
        "folder",
        type=Path,
        metavar="DIR",
        help="a training output folder (or one checkpoint-N folder) written by transformers Trainer, TRL, "
        "Unsloth, LLaMA-Factory or axolotl; read only, nothing is written into it",
    )
    parser.add_argument("--name", help="the run's name in the studio (default: the folder's name)")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="YAML",
        help="the config the run was trained with, in the studio's schema (e.g. the guide's "
        "config/training_config.yaml): fills in what the folder does not tell",
    )
    parser.add_argument(
        "--as-phase",
        action="store_true",
        help="also write the continue phase from the run's latest checkpoint (a fresh optimizer and schedule; "
        "with --config, its epochs minus those done and its learning rate) as YAML under the runs root",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run_import(args) -> int:
    from core.training import adopt

    adopted = adopt.adopt(args.folder, args.name, args.config)
    found, run, diagnosis = adopted.folder, adopted.run, adopted.diagnosis
    phase_path = None
    if args.as_phase:
        phase = adopt.continue_phase(run, found)
        phase_path = adopt.write_phase(phase, run, found)
    if args.json:
        report = {
            "run": {"id": run.id, "name": run.name, "output_dir": run.output_dir, "new": adopted.new},
            "imported": run.imported,
            "checkpoints": [
                {"path": str(c.path), "step": c.step, "weights": c.weights, "manifest_sha256": c.manifest_sha256}
                for c in found.checkpoints
            ],
            "curves": found.curves,
            "base_model": run.base_model,
            "diagnosis": diagnosis.to_dict(),
            "resume": adopted.resume_line,
            "continue_phase": str(phase_path) if phase_path else None,
        }
        print(json.dumps(report, indent=1, default=str))
        return 0
    state = found.state
    print(
        f"run '{run.name}' ({run.id}) {'imported' if adopted.new else 'read again (updated in place)'} from "
        f"{found.given}"
    )
    print(f"  read: {', '.join(found.read)}")
    steps = f"{state.get('global_step', '?')} of {state.get('max_steps', '?')}"
    print(f"  steps: {steps}, epochs {state.get('epoch', '?')}; base model: {run.base_model} ")
    print(f"  curves: {', '.join(found.curves) or 'none'}")
    for ckpt in found.checkpoints:
        print(f"  checkpoint {ckpt.step}: {ckpt.path}" + ("" if ckpt.weights else " — weights not present"))
    print(f"  unknown (the studio's defaults stand in): {', '.join(found.unknown) or 'none'}")
    for note in found.notes:
        print(f"  note: {note}")
    print(f"diagnosis: scenario {diagnosis.scenario or '-'}, {diagnosis.name} — {diagnosis.plain}")
    print(f"  {diagnosis.message}")
    if adopted.resume_line:
        print(adopted.resume_line)
    if phase_path:
        print(
            f"wrote {phase_path} — check it: umlstudio checklist --config {phase_path}; "
            f"run it: umlstudio train --config {phase_path}"
        )
    return 0
