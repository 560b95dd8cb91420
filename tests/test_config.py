"""Every shipped preset loads; every bad input to `umlstudio train` is one clear line, exit 2, nothing written."""

from pathlib import Path

import pytest

from core import cli, paths
from core import config as cfg

PRESETS = sorted(paths.CONFIG_DIR.glob("*.yaml"))
GOOD = """\
model:
  base: smollm2-135m
training:
  output_dir: phase1
  learning_rate: 1.0e-4
  num_train_epochs: 3
  rows_per_micro_batch: 4
lora:
  r: 64
  lora_dropout: 0.0
"""


def test_every_preset_loads_and_starts_with_its_command():
    assert {p.name for p in PRESETS} >= {
        "training_config.yaml",
        "continue_training.yaml",
        "finetune_lower_lr.yaml",
        "restart_more_capacity.yaml",
        "quick_test.yaml",
        "train_longer.yaml",
    }
    for preset in PRESETS:
        cfg.load(preset)
        first = preset.read_text().splitlines()[0]
        assert first.startswith("#"), preset
        assert f"--config config/{preset.name}" in preset.read_text().split("\n\n")[0], preset


def test_presets_say_what_each_phase_is():
    phase1 = cfg.load(paths.CONFIG_DIR / "training_config.yaml")
    more = cfg.load(paths.CONFIG_DIR / "continue_training.yaml")
    lower = cfg.load(paths.CONFIG_DIR / "finetune_lower_lr.yaml")
    restart = cfg.load(paths.CONFIG_DIR / "restart_more_capacity.yaml")
    quick = cfg.load(paths.CONFIG_DIR / "quick_test.yaml")
    longer = cfg.load(paths.CONFIG_DIR / "train_longer.yaml")  # the guide's "Train longer from scratch"
    assert (longer.training.num_train_epochs, longer.training.learning_rate, longer.lora.r, longer.lora.lora_alpha) == (
        5,
        1.5e-4,
        128,
        256,
    )
    assert longer.phase.continue_from is None and longer.training.early_stopping_patience
    assert (phase1.training.learning_rate, phase1.training.num_train_epochs, phase1.phase.continue_from) == (
        1e-4,
        3,
        None,
    )
    assert (more.phase.continue_from, more.training.num_train_epochs, more.training.learning_rate) == (
        "phase1",
        2,
        1e-4,
    )
    assert (lower.training.learning_rate, lower.training.num_train_epochs) == (3e-5, 2) and lower.phase.continue_from
    assert (restart.lora.r, restart.lora.lora_alpha, restart.training.learning_rate, restart.phase.continue_from) == (
        128,
        256,
        2e-4,
        None,
    )
    assert quick.training.max_steps == 100
    outputs = [c.training.output_dir for c in (phase1, more, lower, restart, quick, longer)]
    assert len(set(outputs)) == len(outputs)  # no preset writes into another's folder
    for c in (phase1, more, lower, restart, quick, longer):
        assert c.training.resume_from_checkpoint is None


def test_the_old_name_of_rows_per_micro_batch_is_read_and_saved_under_the_new_one(tmp_path):
    """training.per_device_train_batch_size (the HF name; the trainer is given 1 packed micro-batch per device)
    is read as training.rows_per_micro_batch, in a YAML, a --set and a stored config alike."""
    path = tmp_path / "old.yaml"
    path.write_text(GOOD.replace("rows_per_micro_batch: 4", "per_device_train_batch_size: 8"))
    config = cfg.load(path)
    assert config.training.rows_per_micro_batch == 8
    assert "per_device_train_batch_size" not in config.to_dict()["training"]
    assert (
        cfg.load(tmp_path / "old.yaml", ["training.per_device_train_batch_size=2"]).training.rows_per_micro_batch == 2
    )
    stored = {"training": {"per_device_train_batch_size": 2, "learning_rate": 1e-4}, "lora": {"r": 8}}
    assert cfg.current_names(stored) == {
        "training": {"rows_per_micro_batch": 2, "learning_rate": 1e-4},
        "lora": {"r": 8},
    }


def test_a_set_override_applies(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    config = cfg.load(path, ["training.learning_rate=3e-5", "lora.lora_dropout=0.05"])
    assert (config.training.learning_rate, config.lora.lora_dropout) == (3e-5, 0.05)


# (case, YAML text or None for a missing file, extra CLI args, what the one line must say)
BAD = [
    (
        "unknown key",
        GOOD.replace("learning_rate:", "learning_rat:"),
        [],
        ["c.yaml:5", "learning_rat", "training.learning_rate"],
    ),
    (
        "wrong type",
        GOOD.replace("rows_per_micro_batch: 4", "rows_per_micro_batch: four"),
        [],
        ["c.yaml:7", "rows_per_micro_batch", "'four'"],
    ),
    (
        "lr zero",
        GOOD.replace("learning_rate: 1.0e-4", "learning_rate: 0"),
        [],
        ["c.yaml:5", "learning_rate", "greater than 0"],
    ),
    (
        "lr negative",
        GOOD.replace("learning_rate: 1.0e-4", "learning_rate: -1e-4"),
        [],
        ["learning_rate", "greater than 0"],
    ),
    ("rank zero", GOOD.replace("r: 64", "r: 0"), [], ["c.yaml:9", "lora.r", "greater than or equal to 1"]),
    (
        "dropout one",
        GOOD.replace("lora_dropout: 0.0", "lora_dropout: 1.0"),
        [],
        ["c.yaml:10", "lora_dropout", "less than 1"],
    ),
    (
        "dropout negative",
        GOOD.replace("lora_dropout: 0.0", "lora_dropout: -0.1"),
        [],
        ["lora_dropout", "greater than or equal to 0"],
    ),
    (
        "epochs zero",
        GOOD.replace("num_train_epochs: 3", "num_train_epochs: 0"),
        [],
        ["c.yaml:6", "num_train_epochs", "greater than 0"],
    ),
    (
        "batch zero",
        GOOD.replace("rows_per_micro_batch: 4", "rows_per_micro_batch: 0"),
        [],
        ["c.yaml:7", "rows_per_micro_batch"],
    ),
    (
        "old batch name zero",
        GOOD.replace("rows_per_micro_batch: 4", "per_device_train_batch_size: 0"),
        [],
        ["c.yaml:7", "rows_per_micro_batch"],
    ),
    (
        "old and new batch name",
        GOOD.replace("rows_per_micro_batch: 4", "rows_per_micro_batch: 4\n  per_device_train_batch_size: 2"),
        [],
        ["per_device_train_batch_size is the old name of rows_per_micro_batch"],
    ),
    (
        "bad --set value",
        GOOD,
        ["--set", "training.learning_rate=-3"],
        ["--set", "training.learning_rate", "greater than 0"],
    ),
    ("--set unknown key", GOOD, ["--set", "training.lerning_rate=3e-5"], ["--set", "training.learning_rate"]),
    ("--set without =", GOOD, ["--set", "training.learning_rate"], ["--set training.learning_rate", "key=value"]),
    ("missing file", None, [], ["c.yaml", "not found"]),
    ("invalid YAML", GOOD.replace("  r: 64", "  r: [64"), [], ["c.yaml", "not valid YAML"]),
    (
        "resume and continue",
        GOOD.replace("  output_dir: phase1", "  output_dir: phase1\n  resume_from_checkpoint: phase1")
        + "phase:\n  continue_from: phase1\n",
        [],
        ["resume_from_checkpoint", "continue_from", "not both"],
    ),
]


@pytest.mark.parametrize("case, text, extra, expected", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, text, extra, expected, tmp_path, umlstudio_home, capsys):
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    code = cli.main(["train", "--config", str(path), *extra])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for part in expected:
        assert part in lines[0], (part, lines[0])
    assert not Path(umlstudio_home).exists() or not any(Path(umlstudio_home).iterdir())  # nothing written
