"""Every bad input, across the commands: exit code 2, one `error:` line per problem, no traceback, no
progress bar before the error, and nothing written — the runs root, the store and the working folder
are the same after the command as before it.

One table drives it: (case, argv, a fragment the error must hold). `{w}` in an argument is the test's
working folder, `{tiny}` the tiny model's folder; the files named below are made by `workdir`.
"""

import json
import os
from pathlib import Path

import pytest

from core import cli, store

LONG = "x" * 100_000
GOOD = {
    "model": {"base": "{tiny}"},
    "data": {"dataset": "{w}/ds", "eval_rows": 2},
    "training": {"backend": "peft", "output_dir": "{w}/runs_out", "max_steps": 2, "max_seq_length": 64},
    "lora": {"r": 4, "lora_alpha": 8},
}
ROW = {
    "prompt": "A Library has many Books.",
    "plantuml": "@startuml\nclass Library\nclass Book\nLibrary --> Book\n@enduml",
    "diagram_type": "class",
}


def config_with(**sections) -> dict:
    """GOOD with some keys replaced: config_with(training={"learning_rate": 0})."""
    config = json.loads(json.dumps(GOOD))
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section].update(values)
        else:
            config[section] = values
    return config


# name -> the text of {w}/name (str, bytes, or a dict written as JSON, which is YAML)
FILES = {
    "latin1.yaml": "training:\n  output_dir: caf\xe9\n".encode("latin-1"),
    "binary.yaml": b"\x00\xff\xfe\x00garbage",
    "syntax.yaml": "training: [learning_rate: 1\n",
    "tabs.yaml": "training:\n\tlearning_rate: 1e-4\n",
    "alias_bomb.yaml": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
    "merge.yaml": "base: &base {learning_rate: 1.0e-4}\ntraining:\n  <<: *base\n",
    "merge_only.yaml": "training:\n  <<: {learning_rate: 1.0e-4}\n",
    "dup_top.yaml": "training:\n  max_steps: 2\ntraining:\n  max_steps: 3\n",
    "dup_key.yaml": "training:\n  learning_rate: 1.0e-4\n  learning_rate: 2.0e-4\n",
    "list.yaml": "- training\n- lora\n",
    "scalar.yaml": "just words\n",
    "unknown_section.yaml": config_with(trainer={"lr": 1}),
    "typo.yaml": config_with(training={"learning_rat": 1e-4}),
    "lr_word.yaml": config_with(training={"learning_rate": "fast"}),
    "lr_negative.yaml": config_with(training={"learning_rate": -1e-4}),
    "lr_zero.yaml": config_with(training={"learning_rate": 0}),
    "lr_nan.yaml": "training:\n  learning_rate: .nan\n",
    "lr_long.yaml": config_with(training={"learning_rate": LONG}),
    "epochs_zero.yaml": config_with(training={"num_train_epochs": 0, "max_steps": -1}),
    "steps_zero.yaml": config_with(training={"max_steps": 0}),
    "steps_negative.yaml": config_with(training={"max_steps": -5}),
    "batch_zero.yaml": config_with(training={"rows_per_micro_batch": 0}),
    "batch_fraction.yaml": config_with(training={"rows_per_micro_batch": 1.5}),
    "accumulation_zero.yaml": config_with(training={"gradient_accumulation_steps": 0}),
    "warmup_one.yaml": config_with(training={"warmup_ratio": 1}),
    "dropout_one.yaml": config_with(lora={"lora_dropout": 1}),
    "rank_zero.yaml": config_with(lora={"r": 0}),
    "no_targets.yaml": config_with(lora={"target_modules": []}),
    "scheduler.yaml": config_with(training={"lr_scheduler_type": "zigzag"}),
    "backend.yaml": config_with(training={"backend": "tensorflow"}),
    "dtype.yaml": config_with(model={"dtype": "float16"}),
    "seq_short.yaml": config_with(training={"max_seq_length": 8}),
    "quality.yaml": config_with(quality={"valid_rate": 2}),
    "eval_rows_zero.yaml": config_with(data={"eval_rows": 0}),
    "both_ops.yaml": config_with(training={"resume_from_checkpoint": "x"}, phase={"continue_from": "y"}),
    "section_scalar.yaml": config_with(training=5),
    "weights_zero.yaml": config_with(data={"type_weights": {"class": 0}}),
    "weights_negative.yaml": config_with(data={"type_weights": {"class": -1, "state": 2}}),
    "weights_unknown.yaml": config_with(data={"type_weights": {"flowchart": 1}}),
    "weights_other_type.yaml": config_with(data={"type_weights": {"state": 1}}),
    "out_file.yaml": config_with(training={"output_dir": "{w}/a_file"}),
    "out_proc.yaml": config_with(training={"output_dir": "/proc/umlstudio-run"}),
    "out_under_file.yaml": config_with(training={"output_dir": "{w}/a_file/run"}),
    "out_sys.yaml": config_with(training={"output_dir": "/sys/umlstudio-run"}),
    "out_etc.yaml": config_with(training={"output_dir": "/etc/umlstudio-run"}),
    "out_relative_usr.yaml": config_with(training={"output_dir": "../" * 40 + "usr/umlstudio-run"}),
    "out_link_etc.yaml": config_with(training={"output_dir": "{w}/to_etc/umlstudio-run"}),
    "lora_rank_huge.yaml": config_with(lora={"r": 100000}),
    "lora_unknown_module.yaml": config_with(lora={"target_modules": ["q_proj", "qkv_proj"]}),
    "memory_huge_batch.yaml": config_with(training={"tokens_per_batch": 50_000_000}),
    "data_fifo.yaml": config_with(data={"dataset": "{w}/fifo.jsonl"}),
    "data_device.yaml": config_with(data={"dataset": "/dev/zero"}),
    "data_missing.yaml": config_with(data={"dataset": "{w}/no_such_dataset"}),
    "data_latin1.yaml": config_with(data={"dataset": "{w}/ds_latin1"}),
    "data_not_json.yaml": config_with(data={"dataset": "{w}/ds_not_json"}),
    "data_no_prompt.yaml": config_with(data={"dataset": "{w}/ds_no_prompt"}),
    "data_empty.yaml": config_with(data={"dataset": "{w}/ds_empty"}),
    "data_long.yaml": config_with(data={"dataset": "{w}/ds_long"}),
    "data_train_file.yaml": config_with(data={"dataset": "{w}/ds", "train_file": "{w}/nothing.jsonl"}),
    "base_missing.yaml": config_with(model={"base": "./no/such/model"}),
    "base_not_model.yaml": config_with(model={"base": "{w}/ds"}),
    "continue_missing.yaml": config_with(phase={"continue_from": "{w}/no_checkpoint", "override_reason": "t"}),
    "continue_base.yaml": config_with(phase={"continue_from": "base", "override_reason": "t"}),
    "continue_corrupt.yaml": config_with(
        phase={"continue_from": "{w}/ckpt_corrupt_config/checkpoint-2", "override_reason": "t"}
    ),
    "continue_truncated.yaml": config_with(
        phase={"continue_from": "{w}/ckpt_truncated/checkpoint-2", "override_reason": "t"}
    ),
    "continue_empty_dir.yaml": config_with(
        phase={"continue_from": "{w}/ckpt_empty/checkpoint-2", "override_reason": "t"}
    ),
    "resume_missing.yaml": config_with(training={"resume_from_checkpoint": "{w}/no_run"}),
    "resume_empty.yaml": config_with(training={"resume_from_checkpoint": "{w}/ckpt_empty"}),
    "empty.puml": "",
    "only_tags.puml": "@startuml\n\n' a comment\n@enduml\n",
    "latin1.puml": "@startuml\nclass Caf\xe9\n@enduml\n".encode("latin-1"),
    "huge.puml": "@startuml\n" + "class A\n" * 10_000 + "@enduml\n",
    "good.puml": "@startuml\nclass A\nA --> B\n@enduml\n",
    "a_file": "not a folder\n",
    "rows_latin1.jsonl": (json.dumps({**ROW, "prompt": "caf\xe9"}, ensure_ascii=False) + "\n").encode("latin-1"),
    "nothing.jsonl": "",
}

# (case, argv, fragment of the one error line)
CASES = [
    # the command line itself
    ("unknown command", ["fly"], "invalid choice"),
    ("no command", [], "required"),
    ("unknown flag", ["runs", "--colour"], "unrecognized arguments"),
    # train: the config file
    ("config missing", ["train", "--config", "{w}/none.yaml"], "config file not found"),
    ("config is a folder", ["train", "--config", "{w}/ds"], "config file not found"),
    ("config not UTF-8", ["train", "--config", "{w}/latin1.yaml"], "not UTF-8"),
    ("config binary", ["train", "--config", "{w}/binary.yaml"], "not UTF-8"),
    ("config YAML syntax", ["train", "--config", "{w}/syntax.yaml"], "not valid YAML"),
    ("config tabs", ["train", "--config", "{w}/tabs.yaml"], "not valid YAML"),
    ("config alias bomb", ["train", "--config", "{w}/alias_bomb.yaml"], "aliases"),
    ("config merge key with alias", ["train", "--config", "{w}/merge.yaml"], "aliases"),
    ("config merge key", ["train", "--config", "{w}/merge_only.yaml"], "merge keys"),
    ("config duplicate section", ["train", "--config", "{w}/dup_top.yaml"], "written twice"),
    ("config duplicate key", ["train", "--config", "{w}/dup_key.yaml"], "written twice"),
    ("config a list", ["train", "--config", "{w}/list.yaml"], "mapping of sections"),
    ("config a scalar", ["train", "--config", "{w}/scalar.yaml"], "mapping of sections"),
    ("unknown section", ["train", "--config", "{w}/unknown_section.yaml"], "unknown key 'trainer'"),
    ("typo with suggestion", ["train", "--config", "{w}/typo.yaml"], "did you mean 'training.learning_rate'"),
    ("learning rate a word", ["train", "--config", "{w}/lr_word.yaml"], "training.learning_rate"),
    ("learning rate negative", ["train", "--config", "{w}/lr_negative.yaml"], "training.learning_rate"),
    ("learning rate zero", ["train", "--config", "{w}/lr_zero.yaml"], "training.learning_rate"),
    ("learning rate nan", ["train", "--config", "{w}/lr_nan.yaml"], "training.learning_rate"),
    ("a 100k-character value", ["train", "--config", "{w}/lr_long.yaml"], "training.learning_rate"),
    ("epochs zero", ["train", "--config", "{w}/epochs_zero.yaml"], "training.num_train_epochs"),
    ("max_steps zero", ["train", "--config", "{w}/steps_zero.yaml"], "max_steps"),
    ("max_steps negative", ["train", "--config", "{w}/steps_negative.yaml"], "max_steps"),
    ("batch zero", ["train", "--config", "{w}/batch_zero.yaml"], "rows_per_micro_batch"),
    ("batch a fraction", ["train", "--config", "{w}/batch_fraction.yaml"], "rows_per_micro_batch"),
    ("accumulation zero", ["train", "--config", "{w}/accumulation_zero.yaml"], "gradient_accumulation_steps"),
    ("warm-up ratio 1", ["train", "--config", "{w}/warmup_one.yaml"], "warmup_ratio"),
    ("dropout 1", ["train", "--config", "{w}/dropout_one.yaml"], "lora_dropout"),
    ("rank zero", ["train", "--config", "{w}/rank_zero.yaml"], "lora.r"),
    ("no target modules", ["train", "--config", "{w}/no_targets.yaml"], "target_modules"),
    ("unknown scheduler", ["train", "--config", "{w}/scheduler.yaml"], "lr_scheduler_type"),
    ("unknown backend", ["train", "--config", "{w}/backend.yaml"], "training.backend"),
    ("fp16 on a CPU config", ["train", "--config", "{w}/dtype.yaml"], "model.dtype"),
    ("max_seq_length tiny", ["train", "--config", "{w}/seq_short.yaml"], "max_seq_length"),
    ("a threshold over 1", ["train", "--config", "{w}/quality.yaml"], "quality.valid_rate"),
    ("eval_rows zero", ["train", "--config", "{w}/eval_rows_zero.yaml"], "data.eval_rows"),
    ("resume and continue", ["train", "--config", "{w}/both_ops.yaml"], "not both"),
    ("a section that is a number", ["train", "--config", "{w}/section_scalar.yaml"], "training"),
    ("type weights all zero", ["train", "--config", "{w}/weights_zero.yaml"], "type_weights"),
    ("type weights negative", ["train", "--config", "{w}/weights_negative.yaml"], "type_weights"),
    ("type weights unknown type", ["train", "--config", "{w}/weights_unknown.yaml"], "type_weights"),
    ("type weights for types the data lacks", ["train", "--config", "{w}/weights_other_type.yaml"], "type_weights"),
    # train: --set
    (
        "--set without =",
        ["train", "--config", "{w}/good.yaml", "--set", "training.learning_rate"],
        "expected key=value",
    ),
    ("--set unknown key", ["train", "--config", "{w}/good.yaml", "--set", "training.lr=1"], "unknown key"),
    (
        "--set a word for a number",
        ["train", "--config", "{w}/good.yaml", "--set", "training.max_steps=many"],
        "max_steps",
    ),
    ("--set an alias", ["train", "--config", "{w}/good.yaml", "--set", "training.max_steps=*a"], "max_steps"),
    ("--processes zero", ["train", "--config", "{w}/good.yaml", "--processes", "0"], "training.processes"),
    ("--processes a word", ["train", "--config", "{w}/good.yaml", "--processes", "two"], "--processes"),
    (
        "more processes than GPUs or cores",
        ["train", "--config", "{w}/good.yaml", "--processes", "4096"],
        "training.processes 4096",
    ),
    ("--set a 100k-character key", ["train", "--config", "{w}/good.yaml", "--set", LONG + "=1"], "unknown key"),
    # train: where it writes
    ("output_dir is a file", ["train", "--config", "{w}/out_file.yaml"], "is a file"),
    ("output_dir under /proc", ["train", "--config", "{w}/out_proc.yaml"], "system folder"),
    ("output_dir under /sys", ["train", "--config", "{w}/out_sys.yaml"], "system folder"),
    ("output_dir below a file", ["train", "--config", "{w}/out_under_file.yaml"], "is a file"),
    ("output_dir under /etc", ["train", "--config", "{w}/out_etc.yaml"], "/etc is a system folder"),
    ("output_dir relative, into /usr", ["train", "--config", "{w}/out_relative_usr.yaml"], "/usr is a system folder"),
    ("output_dir through a link to /etc", ["train", "--config", "{w}/out_link_etc.yaml"], "/etc is a system folder"),
    (
        "--set output_dir under /var/lib",
        ["train", "--config", "{w}/good.yaml", "--set", "training.output_dir=/var/lib/umlx"],
        "/var/lib is a system folder",
    ),
    (
        "--set output_dir under /boot",
        ["train", "--config", "{w}/good.yaml", "--set", "training.output_dir=/boot/umlx"],
        "/boot is a system folder",
    ),
    # train: fits before it starts (the base model's config.json, no weights loaded)
    ("lora.r larger than the model's dimensions", ["train", "--config", "{w}/lora_rank_huge.yaml"], "lora.r 100000"),
    (
        "--set lora.r=100000 on the 135M model",
        ["train", "--config", "{w}/good.yaml", "--set", "model.base=smollm2-135m", "--set", "lora.r=100000"],
        "at most 192",
    ),
    (
        "a target module the model lacks",
        ["train", "--config", "{w}/lora_unknown_module.yaml"],
        "'qkv_proj' is not a module",
    ),
    (
        "a micro-batch that cannot fit in memory",
        ["train", "--config", "{w}/memory_huge_batch.yaml"],
        "training.tokens_per_batch",
    ),
    # train: data
    ("dataset missing", ["train", "--config", "{w}/data_missing.yaml"], "no_such_dataset"),
    ("dataset a FIFO", ["train", "--config", "{w}/data_fifo.yaml"], "not a regular file"),
    ("dataset a device", ["train", "--config", "{w}/data_device.yaml"], "not a regular file"),
    ("dataset not UTF-8", ["train", "--config", "{w}/data_latin1.yaml"], "not UTF-8"),
    ("dataset line not JSON", ["train", "--config", "{w}/data_not_json.yaml"], "train.jsonl:2"),
    ("dataset row without prompt", ["train", "--config", "{w}/data_no_prompt.yaml"], "prompt"),
    ("dataset without rows", ["train", "--config", "{w}/data_empty.yaml"], "holds no rows"),
    ("every row longer than max_seq_length", ["train", "--config", "{w}/data_long.yaml"], "max_seq_length 64"),
    ("train_file empty", ["train", "--config", "{w}/data_train_file.yaml"], "holds no rows"),
    # train: model and checkpoints
    ("base model missing", ["train", "--config", "{w}/base_missing.yaml"], "model.base"),
    ("base folder not a model", ["train", "--config", "{w}/base_not_model.yaml"], "not a model folder"),
    ("continue from nothing", ["train", "--config", "{w}/continue_missing.yaml"], "no_checkpoint"),
    ("continue from base", ["train", "--config", "{w}/continue_base.yaml"], "fresh run"),
    (
        "continue from a corrupt adapter_config.json",
        ["train", "--config", "{w}/continue_corrupt.yaml"],
        "adapter_config.json",
    ),
    (
        "continue from a truncated adapter",
        ["train", "--config", "{w}/continue_truncated.yaml"],
        "adapter_model.safetensors",
    ),
    (
        "continue from an empty checkpoint folder",
        ["train", "--config", "{w}/continue_empty_dir.yaml"],
        "without checkpoints",
    ),
    ("resume a run that does not exist", ["train", "--config", "{w}/resume_missing.yaml"], "not found"),
    ("resume a run without checkpoints", ["train", "--config", "{w}/resume_empty.yaml"], "no complete checkpoint"),
    # checklist
    ("checklist config missing", ["checklist", "--config", "{w}/none.yaml"], "config file not found"),
    ("checklist config not UTF-8", ["checklist", "--config", "{w}/latin1.yaml"], "not UTF-8"),
    ("checklist config alias bomb", ["checklist", "--config", "{w}/alias_bomb.yaml"], "aliases"),
    # render
    ("render file missing", ["render", "{w}/none.puml", "--out", "{w}/x.svg"], "file not found"),
    ("render a folder", ["render", "{w}/ds", "--out", "{w}/x.svg"], "file not found"),
    ("render --out .txt", ["render", "{w}/good.puml", "--out", "{w}/x.txt"], ".svg or .png"),
    ("render --out without suffix", ["render", "{w}/good.puml", "--out", "{w}/x"], ".svg or .png"),
    ("render --out missing folder", ["render", "{w}/good.puml", "--out", "{w}/nope/x.svg"], "does not exist"),
    ("render --out a folder", ["render", "{w}/good.puml", "--out", "{w}/ds"], "is a folder"),
    ("render --out below a file", ["render", "{w}/good.puml", "--out", "{w}/a_file/x.svg"], "does not exist"),
    ("render --out in /proc", ["render", "{w}/good.puml", "--out", "/proc/x.svg"], "system folder"),
    ("render --out in /etc", ["render", "{w}/good.puml", "--out", "/etc/x.svg"], "/etc is a system folder"),
    (
        "render --out through a link to /etc",
        ["render", "{w}/good.puml", "--out", "{w}/to_etc/x.svg"],
        "/etc is a system folder",
    ),
    (
        "render --out relative into /usr",
        ["render", "{w}/good.puml", "--out", "../" * 40 + "usr/x.svg"],
        "/usr is a system folder",
    ),
    ("render --timeout -1", ["render", "{w}/good.puml", "--out", "{w}/x.svg", "--timeout", "-1"], "--timeout"),
    ("render --timeout nan", ["render", "{w}/good.puml", "--out", "{w}/x.svg", "--timeout", "nan"], "--timeout"),
    ("render --timeout 0", ["render", "{w}/good.puml", "--out", "{w}/x.svg", "--timeout", "0"], "--timeout"),
    ("render --timeout inf", ["render", "{w}/good.puml", "--out", "{w}/x.svg", "--timeout", "inf"], "--timeout"),
    ("render --timeout a word", ["render", "{w}/good.puml", "--out", "{w}/x.svg", "--timeout", "soon"], "--timeout"),
    ("render an empty file", ["render", "{w}/empty.puml", "--out", "{w}/x.svg"], "empty"),
    ("render only @startuml/@enduml", ["render", "{w}/only_tags.puml", "--out", "{w}/x.svg"], "empty"),
    ("render not UTF-8", ["render", "{w}/latin1.puml", "--out", "{w}/x.svg"], "not UTF-8"),
    ("render over 64 KB", ["render", "{w}/huge.puml", "--out", "{w}/x.svg"], "limit"),
    ("render without --out", ["render", "{w}/good.puml"], "--out"),
    # generate
    (
        "generate from a missing checkpoint",
        ["generate", "--checkpoint", "{w}/no_checkpoint", "--prompt", "a shop"],
        "no_checkpoint",
    ),
    (
        "generate an unknown type",
        ["generate", "--checkpoint", "base", "--base", "{tiny}", "--prompt", "a shop", "--type", "flowchart"],
        "flowchart",
    ),
    (
        "generate --out missing folder",
        ["generate", "--checkpoint", "base", "--base", "{tiny}", "--prompt", "a shop", "--out", "{w}/nope/x.svg"],
        "does not exist",
    ),
    (
        "generate --out a folder",
        ["generate", "--checkpoint", "base", "--base", "{tiny}", "--prompt", "a shop", "--out", "{w}/ds"],
        "is a folder",
    ),
    (
        "generate --out .txt",
        ["generate", "--checkpoint", "base", "--base", "{tiny}", "--prompt", "a shop", "--out", "{w}/x.txt"],
        "--out",
    ),
    (
        "generate --out in /proc",
        ["generate", "--checkpoint", "base", "--base", "{tiny}", "--prompt", "a shop", "--out", "/proc/x.svg"],
        "system folder",
    ),
    ("generate an empty prompt", ["generate", "--checkpoint", "base", "--base", "{tiny}", "--prompt", "  "], "prompt"),
    (
        "generate --max-new-tokens 0",
        ["generate", "--checkpoint", "base", "--base", "{tiny}", "--prompt", "a shop", "--max-new-tokens", "0"],
        "max-new-tokens",
    ),
    (
        "generate --max-new-tokens a word",
        ["generate", "--checkpoint", "base", "--prompt", "a shop", "--max-new-tokens", "lots"],
        "max-new-tokens",
    ),
    (
        "generate a prompt longer than the context",
        ["generate", "--checkpoint", "base", "--base", "{tiny}", "--prompt", LONG],
        "tokens",
    ),
    (
        "generate from a corrupt adapter",
        ["generate", "--checkpoint", "{w}/ckpt_corrupt_config/checkpoint-2", "--prompt", "a shop"],
        "adapter_config.json",
    ),
    (
        "generate from a truncated adapter",
        ["generate", "--checkpoint", "{w}/ckpt_truncated/checkpoint-2", "--prompt", "a shop"],
        "adapter_model.safetensors",
    ),
    (
        "generate base from a missing model",
        ["generate", "--checkpoint", "base", "--base", "./no/such/model", "--prompt", "a shop"],
        "model",
    ),
    # evaluate
    ("evaluate a missing checkpoint", ["evaluate", "--checkpoint", "{w}/no_checkpoint"], "no_checkpoint"),
    ("evaluate --limit 0", ["evaluate", "--checkpoint", "base", "--limit", "0"], "--limit"),
    ("evaluate --limit negative", ["evaluate", "--checkpoint", "base", "--limit", "-3"], "--limit"),
    ("evaluate --limit a word", ["evaluate", "--checkpoint", "base", "--limit", "all"], "--limit"),
    (
        "evaluate a missing dataset",
        ["evaluate", "--checkpoint", "base", "--dataset", "{w}/no_such_dataset"],
        "no_such_dataset",
    ),
    (
        "evaluate a dataset not UTF-8",
        ["evaluate", "--checkpoint", "base", "--dataset", "{w}/rows_latin1.jsonl"],
        "not UTF-8",
    ),
    (
        "evaluate an unknown split",
        ["evaluate", "--checkpoint", "base", "--dataset", "{w}/ds", "--split", "holdout"],
        "holdout",
    ),
    ("evaluate --max-new-tokens 0", ["evaluate", "--checkpoint", "base", "--max-new-tokens", "0"], "max-new-tokens"),
    ("evaluate --batch-size 0", ["evaluate", "--checkpoint", "base", "--batch-size", "0"], "batch-size"),
    (
        "evaluate a truncated adapter",
        ["evaluate", "--checkpoint", "{w}/ckpt_truncated/checkpoint-2"],
        "adapter_model.safetensors",
    ),
    (
        "evaluate a corrupt adapter_config.json",
        ["evaluate", "--checkpoint", "{w}/ckpt_corrupt_config/checkpoint-2"],
        "adapter_config.json",
    ),
    # compare
    ("compare one model", ["compare", "--model1", "base"], "--model2"),
    ("compare a missing checkpoint", ["compare", "--model1", "base", "--model2", "{w}/no_checkpoint"], "no_checkpoint"),
    ("compare the same checkpoint twice", ["compare", "--model1", "base", "--model2", "base"], "named twice"),
    (
        "compare --out missing folder",
        ["compare", "--model1", "base", "--model2", "{w}/ckpt_good/checkpoint-2", "--out", "{w}/nope/r.html"],
        "does not exist",
    ),
    (
        "compare --out a folder",
        ["compare", "--model1", "base", "--model2", "{w}/ckpt_good/checkpoint-2", "--out", "{w}/ds"],
        "is a folder",
    ),
    (
        "compare --out in /proc",
        ["compare", "--model1", "base", "--model2", "{w}/ckpt_good/checkpoint-2", "--out", "/proc/r.html"],
        "system folder",
    ),
    ("compare --limit 0", ["compare", "--model1", "base", "--model2", "base", "--limit", "0"], "--limit"),
    # advise
    ("advise a run that does not exist", ["advise", "--run", "no_such_run"], "no_such_run"),
    ("advise --backup of a run that does not exist", ["advise", "--run", "no_such_run", "--backup"], "no_such_run"),
    # data
    ("data of a missing dataset", ["data", "--dataset", "{w}/no_such_dataset"], "no_such_dataset"),
    ("data of a dataset not UTF-8", ["data", "--dataset", "{w}/rows_latin1.jsonl"], "not UTF-8"),
    ("data --filter an unknown type", ["data", "--filter", "flowchart", "--out", "{w}/f.jsonl"], "flowchart"),
    (
        "data --filter --out missing folder",
        ["data", "--filter", "class", "--out", "{w}/nope/f.jsonl"],
        "does not exist",
    ),
    ("data --filter --out a folder", ["data", "--filter", "class", "--out", "{w}/ds"], "is a folder"),
    (
        "data --filter --out in /usr/lib",
        ["data", "--filter", "class", "--out", "/usr/lib/f.jsonl"],
        "/usr is a system folder",
    ),
    ("data of a FIFO", ["data", "--dataset", "{w}/fifo.jsonl"], "not a regular file"),
    ("data of a device", ["data", "--dataset", "/dev/null"], "not a regular file"),
    (
        "data --replay-share 2",
        ["data", "--filter", "class", "--out", "{w}/f.jsonl", "--replay-share", "2"],
        "replay share",
    ),
    ("data --max-seq-length 0", ["data", "--max-seq-length", "0"], "max-seq-length"),
    # export
    (
        "export a missing checkpoint",
        ["export", "--checkpoint", "{w}/no_checkpoint", "--out", "{w}/exported"],
        "no_checkpoint",
    ),
    (
        "export an unknown format",
        ["export", "--checkpoint", "base", "--out", "{w}/exported", "--format", "zip"],
        "format",
    ),
    ("export into a folder with files", ["export", "--checkpoint", "base", "--out", "{w}/ds"], "not empty"),
    ("export below a file", ["export", "--checkpoint", "base", "--out", "{w}/a_file/exported"], "a_file"),
    (
        "export into /usr",
        ["export", "--checkpoint", "base", "--out", "/usr/local/umlstudio-export"],
        "/usr is a system folder",
    ),
    (
        "export through a link to /etc",
        ["export", "--checkpoint", "base", "--out", "{w}/to_etc/exported"],
        "/etc is a system folder",
    ),
    (
        "advise --backup-dir in /etc",
        ["advise", "--run", "no_such_run", "--backup", "--backup-dir", "/etc/umlstudio-backups"],
        "/etc is a system folder",
    ),
    ("advise --out in /sbin", ["advise", "--run", "no_such_run", "--out", "/sbin/next.yaml"], "system folder"),
    (
        "export a truncated adapter",
        ["export", "--checkpoint", "{w}/ckpt_truncated/checkpoint-2", "--out", "{w}/exported"],
        "adapter_model.safetensors",
    ),
    # prepare-model
    ("prepare a missing base", ["prepare-model", "--base", "./no/such/model"], "model"),
]


def write(path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        path.write_text(json.dumps(content))
    else:
        path.write_text(content)


def fill(value, w, tiny):
    if isinstance(value, dict):
        return {k: fill(v, w, tiny) for k, v in value.items()}
    if isinstance(value, str):
        return value.replace("{w}", str(w)).replace("{tiny}", str(tiny))
    return value


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model):
    w = tmp_path_factory.mktemp("bad-inputs")
    rows = "".join(json.dumps(r) + "\n" for r in [ROW] * 4)
    for name, text in {
        "ds": rows,
        "ds_empty": "",
        "ds_no_prompt": json.dumps({"plantuml": ROW["plantuml"]}) + "\n",
        "ds_not_json": rows[: len(rows) // 4] + "{not json\n",
        "ds_long": json.dumps({**ROW, "prompt": "word " * 400}) + "\n",
    }.items():
        write(w / name / "train.jsonl", text)
        write(w / name / "validation.jsonl", rows)
        write(w / name / "test.jsonl", rows)
    write(w / "ds_latin1" / "train.jsonl", FILES["rows_latin1.jsonl"])
    write(w / "ds_latin1" / "validation.jsonl", rows)
    os.mkfifo(w / "fifo.jsonl")  # a dataset that is a FIFO: reading it would wait for a writer forever
    (w / "to_etc").symlink_to("/etc", target_is_directory=True)  # an output place through a link
    for name, content in FILES.items():
        write(w / name, fill(content, w, tiny_model))
    write(w / "good.yaml", fill(GOOD, w, tiny_model))
    adapter_config = {
        "base_model_name_or_path": str(tiny_model),
        "r": 4,
        "lora_alpha": 8,
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    }
    safetensors_head = json.dumps(
        {"base_model.model.x.lora_A.weight": {"dtype": "F32", "shape": [4, 64], "data_offsets": [0, 1024]}}
    ).encode()
    truncated = len(safetensors_head).to_bytes(8, "little") + safetensors_head + b"\0" * 100  # 1,024 bytes promised
    write(w / "ckpt_corrupt_config" / "checkpoint-2" / "adapter_config.json", '{"r": 4, "lora_alpha": ')
    write(w / "ckpt_corrupt_config" / "checkpoint-2" / "adapter_model.safetensors", truncated)
    write(w / "ckpt_truncated" / "checkpoint-2" / "adapter_config.json", adapter_config)
    write(w / "ckpt_truncated" / "checkpoint-2" / "adapter_model.safetensors", truncated)
    (w / "ckpt_empty" / "checkpoint-2").mkdir(parents=True)
    make_adapter(tiny_model, w / "ckpt_good" / "checkpoint-2")
    return w


def make_adapter(base, folder) -> None:
    """A real (untrained) LoRA adapter of the tiny model, saved as a checkpoint folder."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM")
    )
    model.save_pretrained(folder)


def snapshot(*folders) -> dict:
    """Every file and folder under `folders` with its size and modification time (the store's own files aside)."""
    seen = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                path = os.path.join(root, name)
                if "studio.duckdb" in name:
                    continue
                stat = os.lstat(path)
                seen[path] = (stat.st_size, stat.st_mtime_ns if name not in dirs else 0)
    return seen


def store_rows() -> dict:
    tables = [r["table_name"] for r in store.query_for_tests("SELECT table_name FROM information_schema.tables")]
    return {t: store.query_for_tests(f'SELECT count(*) AS n FROM "{t}"')[0]["n"] for t in tables}


@pytest.mark.timeout(180)  # a refusal comes before any long work: a case still running by then did the work
@pytest.mark.parametrize("case, argv, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_writes_nothing(
    case, argv, fragment, workdir, tiny_model, umlstudio_home, capsys
):
    argv = [fill(a, workdir, tiny_model) for a in argv]
    store_before, files_before = store_rows(), snapshot(workdir, umlstudio_home)
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, f"{case}: exit {code}\n{err[-1500:]}"
    assert "Traceback" not in err + out, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"{case}: {len(lines)} lines on stderr:\n" + "\n".join(lines[:12])
    assert lines[0].startswith("error: "), lines[0]
    assert fragment.lower() in lines[0].lower(), f"{case}: {fragment!r} not in {lines[0]!r}"
    assert len(lines[0]) <= 600, f"{case}: a {len(lines[0]):,}-character line"
    assert "\r" not in err and "%|" not in err + out  # no progress bar before the error
    assert snapshot(workdir, umlstudio_home) == files_before, f"{case}: something was written"
    assert store_rows() == store_before, f"{case}: the store changed"


def test_the_table_is_large_and_every_case_distinct():
    assert len(CASES) >= 100
    assert len({c[0] for c in CASES}) == len(CASES)
    assert len({json.dumps(c[1]) for c in CASES}) == len(CASES)


# (case, UMLSTUDIO_HOME, fragment of the one error line): a runs root that cannot be one. A read-only
# mount is in tests/test_disk_faults.py (it needs a mount namespace).
HOME_CASES = [
    ("UMLSTUDIO_HOME is a file", "{w}/a_file", "is a file, not a folder"),
    ("UMLSTUDIO_HOME below a file", "{w}/a_file/home", "cannot be created"),
    ("UMLSTUDIO_HOME in /etc", "/etc/umlstudio-home", "/etc is a system folder"),
    ("UMLSTUDIO_HOME through a link to /etc", "{w}/to_etc/umlstudio-home", "/etc is a system folder"),
    ("UMLSTUDIO_HOME relative, into /usr", "../" * 40 + "usr/umlstudio-home", "/usr is a system folder"),
]


@pytest.mark.parametrize("case, home, fragment", HOME_CASES, ids=[c[0] for c in HOME_CASES])
@pytest.mark.parametrize("argv", [["runs"], ["train", "--config", "{w}/good.yaml"]], ids=["runs", "train"])
def test_a_runs_root_that_cannot_be_one_is_one_line(
    case, home, fragment, argv, workdir, tiny_model, monkeypatch, capsys
):
    monkeypatch.setenv("UMLSTUDIO_HOME", fill(home, workdir, tiny_model))
    files_before = snapshot(workdir)
    code = cli.main([fill(a, workdir, tiny_model) for a in argv])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err + out, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: UMLSTUDIO_HOME "), lines
    assert fragment in lines[0], lines[0]
    assert snapshot(workdir) == files_before
    assert not os.path.exists("/etc/umlstudio-home") and not os.path.exists("/usr/umlstudio-home")


@pytest.mark.parametrize(
    "where, fragment", [("open", "not writable"), ("closed", "cannot be created or reached (Permission denied)")]
)
def test_a_runs_root_its_user_cannot_write_is_one_line(where, fragment, tmp_path):
    """As a user without root (root writes anywhere): UMLSTUDIO_HOME a folder of another's, read-only to
    them (`open`), or below a folder they may not enter (`closed`)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the command as another user")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    project = Path(__file__).resolve().parent.parent
    if (
        subprocess.run(
            [*as_nobody, "-c", "import core"],
            cwd="/",
            env={**os.environ, "PYTHONPATH": str(project)},
            capture_output=True,
        ).returncode
        != 0
    ):
        pytest.skip(f"the user nobody cannot read this checkout ({project}): clone it where others may enter")
    parent = Path(tempfile.mkdtemp(prefix="umlstudio-theirs-")) if where == "open" else tmp_path / "private"
    try:
        parent.mkdir(exist_ok=True)
        parent.chmod(0o755 if where == "open" else 0o700)
        home = parent / "home"
        home.mkdir()
        home.chmod(0o555)
        done = subprocess.run(
            [*as_nobody, "-m", "core", "runs"],
            cwd=project,
            capture_output=True,
            text=True,
            env={**os.environ, "UMLSTUDIO_HOME": str(home)},
            timeout=120,
        )
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
        assert len(lines) == 1 and lines[0].startswith(f"error: UMLSTUDIO_HOME {home}: {fragment} — "), lines
        assert os.listdir(home) == []
    finally:
        if where == "open":
            shutil.rmtree(parent)
