"""One YAML schema for a training phase, validated with pydantic.

Groups: `model` (which base), `data` (which rows), `training` (the seed's Trainer keys), `lora`
(adapter shape), `phase` (continue from an earlier checkpoint), `evaluation` (decoding for the
quality checks) and `quality` (the thresholds of the seed's good/bad lists).

Defaults follow the seed's Phase 1 (lr 1e-4, 3 epochs, dropout 0, r 64, alpha 128, effective batch
16). CPU scale-downs, each said where it is made: batch 4 x accumulation 4 instead of 1 x 16 (same
effective batch, fewer tiny matmuls), max_seq_length 512, checkpoints every 100 steps.

Bad input never gives a traceback: every problem becomes one line of a UserError naming the file,
the line, the key and the fix (an unknown key gets the closest valid key).
"""

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import UserError

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# Keys renamed since, still read under their old names (a YAML, a --set, a stored run's config):
# {section: {old name: new name}}. Saved configs carry the new names.
RENAMED = {
    # the HF name said "rows per device"; the trainer is given 1 packed micro-batch per device, which
    # holds this many rows (when training.tokens_per_batch is not set)
    "training": {"per_device_train_batch_size": "rows_per_micro_batch"},
}


def _rename(values, renamed: dict[str, str]):
    """A section's raw values with each old key under its new name; both written is an error."""
    if not isinstance(values, dict) or not renamed.keys() & values.keys():
        return values
    values = dict(values)
    for old, new in renamed.items():
        if old in values:
            if new in values:
                raise ValueError(f"{old} is the old name of {new}: keep {new} alone")
            values[new] = values.pop(old)
    return values


def current_names(raw: dict) -> dict:
    """A stored config (a checkpoint's umlstudio.json, a run row's) with each renamed key under its new name."""
    return {
        section: _rename(values, RENAMED[section]) if section in RENAMED else values for section, values in raw.items()
    }


class ModelConfig(Section):
    base: str = Field(
        "smollm2-135m",
        description="the embedded SmolLM2-135M-Instruct (smollm2-135m), a local HF model folder, or a hub id "
        "(org/name) already in the local Hugging Face cache (nothing is downloaded)",
    )
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"  # auto = bf16 where the CPU/GPU supports it
    load_in_4bit: bool = Field(
        False,
        description="QLoRA: the base model's linear layers in 4-bit NF4 (bitsandbytes), LoRA on top; about a "
        "quarter of the weights' memory on a CUDA GPU (both backends); on a CPU the peft backend runs it, slower",
    )


class DataConfig(Section):
    dataset: str = Field(
        "data/default",
        description="a dataset folder (train/validation/test.jsonl), a .jsonl/.csv/.json/.parquet file, a folder "
        "saved by datasets, or a folder name under data/",
    )
    # your columns, when the shape is not detected (prompt/completion, instruction/input/output, messages or
    # conversations, a text column with a @startuml block are): prompt + plantuml (+ input, diagram_type), or
    # messages, or text — e.g. {prompt: question, plantuml: answer}; files with our own columns ignore it
    columns: dict[Literal["prompt", "input", "plantuml", "messages", "text", "diagram_type"], str] = Field(
        default_factory=dict
    )
    train_file: str | None = None  # replaces the dataset's train split (e.g. a filtered subset)
    validation_file: str | None = None  # replaces the dataset's validation split
    eval_rows: int = Field(64, ge=1)  # validation rows scored for eval_loss (CPU: keep it small)
    # share of each diagram type in the rows a phase trains on (core/data.mix; not applied to a train_file,
    # which keeps the mix it was made with); a type left out gets none.
    # Default 20% each for the types with real prose (class, sequence, activity), 10% for the generated ones.
    type_weights: dict[Literal["class", "sequence", "activity", "usecase", "state", "component", "er"], float] = Field(
        default_factory=lambda: {
            "class": 2.0,
            "sequence": 2.0,
            "activity": 2.0,
            "usecase": 1.0,
            "state": 1.0,
            "component": 1.0,
            "er": 1.0,
        }
    )

    @model_validator(mode="after")
    def _some_weight(self):
        if any(weight < 0 for weight in self.type_weights.values()) or not any(self.type_weights.values()):
            raise ValueError("type_weights must be shares >= 0 with at least one above 0, e.g. {class: 1, state: 1}")
        return self

    @model_validator(mode="after")
    def _one_shape(self):
        keys = set(self.columns)
        shapes = (
            {"prompt", "plantuml"} <= keys <= {"prompt", "input", "plantuml", "diagram_type"},
            "messages" in keys and keys <= {"messages", "diagram_type"},
            "text" in keys and keys <= {"text", "diagram_type"},
        )
        if keys and sum(shapes) != 1:
            raise ValueError(
                "columns maps prompt and plantuml (input and diagram_type optional), or messages, or text, to your "
                "columns — e.g. {prompt: question, plantuml: answer}"
            )
        return self

    @property
    def train_source(self) -> str:
        """The dataset a phase trains on: train_file when set, else the dataset's train split."""
        return self.train_file or self.dataset

    @property
    def validation_source(self) -> str:
        return self.validation_file or self.dataset

    @property
    def train_mix(self) -> dict[str, float] | None:
        """The type shares its training rows are mixed by: None for a train_file, which keeps the mix it was
        made with."""
        return None if self.train_file else self.type_weights


# training.report_to's trackers: the module each needs (checked when a run starts, not when a config is read)
# and the package that brings it. "tensorboard" is the worker's own writer.
TRACKERS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow-skinny"),
    "wandb": ("wandb", "wandb"),
}


class TrainingConfig(Section):
    backend: Literal["auto", "unsloth", "peft"] = "auto"
    output_dir: str = "phase1"  # relative paths live under the runs root
    num_train_epochs: float = Field(3, gt=0)
    max_steps: int = -1  # > 0 overrides num_train_epochs
    # "train for 30 minutes": with max_steps -1 the worker measures this machine's step and evaluation time
    # on the phase's own rows and sets max_steps to fit; either way training stops with a checkpoint at the budget
    time_budget_minutes: float | None = Field(None, gt=0)
    learning_rate: float = Field(1e-4, gt=0)
    # a micro-batch is rows end to end (no padding; attention stays inside each row), one trainer sample:
    # filled up to tokens_per_batch tokens when that is set, else rows_per_micro_batch rows
    # (formerly per_device_train_batch_size, still read: see RENAMED)
    rows_per_micro_batch: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(4, ge=1)
    tokens_per_batch: int | None = Field(None, ge=32)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    save_steps: int = Field(100, ge=1)
    eval_steps: int = Field(50, ge=1)
    logging_steps: int = Field(5, ge=1)
    max_seq_length: int = Field(
        512, ge=32, description="tokens of a training row at most, prompt + answer; a longer row's answer is cut"
    )
    seed: int = 42
    resume_from_checkpoint: str | None = None  # only to finish an interrupted run, same hyperparameters
    # early stopping (transformers' EarlyStoppingCallback on eval_loss): the phase ends after this many
    # evaluations in a row without a validation loss lower than the best so far by more than the threshold;
    # every new best evaluation is saved as a checkpoint, so the best one is there at the end. None: off
    early_stopping_patience: int | None = Field(None, ge=1)
    early_stopping_threshold: float = Field(0.0, ge=0)
    # experiment trackers, passed to transformers' `report_to`: "tensorboard" is the worker's own event files
    # (<output_dir>/tensorboard, with tokens/s and where the time went), the others transformers' integrations
    # ("mlflow": MLFLOW_TRACKING_URI, a local ./mlruns by default; "wandb": WANDB_MODE=offline keeps it local).
    # [] for none. The store stays the studio's source of truth
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"])
    processes: int = Field(
        1,
        ge=1,
        description="processes training together (DDP through accelerate: gloo on CPU "
        "cores, nccl on GPUs), peft backend; the global batch is processes x rows_per_micro_batch "
        "x gradient_accumulation_steps",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, values):
        return _rename(values, RENAMED["training"])

    @model_validator(mode="after")
    def _max_steps(self):
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps must be -1 (use num_train_epochs) or a positive number of steps")
        return self

    @model_validator(mode="after")
    def _report_to(self):
        unknown = [name for name in self.report_to if name not in TRACKERS]
        if unknown:
            raise ValueError(
                f"report_to: unknown tracker {unknown[0]!r} — choose from {', '.join(TRACKERS)} ([] for none)"
            )
        return self

    @model_validator(mode="after")
    def _tokens_per_batch(self):
        if self.tokens_per_batch is not None and self.tokens_per_batch < self.max_seq_length:
            raise ValueError(
                f"tokens_per_batch {self.tokens_per_batch} is below max_seq_length {self.max_seq_length}: "
                f"a row of max_seq_length tokens must fit one micro-batch — raise tokens_per_batch"
            )
        return self


class LoraConfig(Section):
    r: int = Field(64, ge=1)
    lora_alpha: int = Field(128, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGETS), min_length=1)


class PhaseConfig(Section):
    continue_from: str | None = None  # a checkpoint folder, or a run folder (its latest checkpoint)
    override_reason: str | None = None  # start although the pre-continue checklist fails; stored


class EvaluationConfig(Section):
    max_new_tokens: int = Field(320, ge=8, description="tokens generated at most per output")
    batch_size: int = Field(
        16,
        ge=1,
        description="prompts generated together; on 2 CPU cores 16 make 1.6x the tokens/s of 8 (BENCHMARKS.md)",
    )
    limit: int = Field(
        100,
        ge=1,
        description="test rows per evaluation, a seeded sample taking every diagram type, "
        "origin and source in turn; 100 give a 95% interval of at most ±0.10 on a rate",
    )
    # decoding (core/inference/generate.py `Decoding`); outputs are stored per setting
    repetition: Literal["none", "dry"] = Field(
        "none",
        description="what keeps an output from repeating itself as it is decoded: none, or dry (a token that would "
        "extend a repeat of what the output already wrote is penalised, as llama.cpp's DRY sampler does, across "
        "lines; structure lines such as end, else, endif and } are exempt); the loop guard still cuts a loop",
    )
    dry_multiplier: float = Field(0.8, gt=0, le=10, description="dry: the penalty on a logit at the allowed length")
    dry_base: float = Field(1.75, ge=1, le=4, description="dry: the penalty's growth per token a repeat runs longer")
    dry_allowed_length: int = Field(2, ge=1, le=64, description="dry: tokens a repeat may run before it is penalised")
    temperature: float = Field(
        0.0, ge=0, le=5, description="0 decodes greedily (the evaluation's reference); above 0 samples at it"
    )
    top_k: int = Field(0, ge=0, description="sampling: only the k most likely tokens (0: all)")
    top_p: float = Field(1.0, gt=0, le=1, description="sampling: only the most likely tokens that make up this mass")
    seed: int = Field(
        0, ge=0, description="sampling: with each prompt it seeds that row's own generator (reproducible in any batch)"
    )
    samples: int = Field(
        1,
        ge=1,
        le=20,
        description="outputs per prompt; with k > 1 (and temperature > 0) pass@k counts a prompt whose k outputs "
        "include valid PlantUML",
    )

    @model_validator(mode="after")
    def _samples_need_sampling(self):
        if self.samples > 1 and self.temperature == 0:
            raise ValueError("samples above 1 need a temperature above 0: greedy decoding gives one output per prompt")
        return self


class QualityConfig(Section):
    good_loss: float = Field(0.5, gt=0)  # seed: good when loss < 0.5
    bad_loss: float = Field(1.0, gt=0)  # seed: bad when loss is still > 1.0
    valid_rate: float = Field(0.9, ge=0, le=1)  # share of outputs PlantUML accepts
    complete_rate: float = Field(0.9, ge=0, le=1)  # share with @startuml..@enduml, not cut off
    entity_f1: float = Field(0.7, ge=0, le=1)  # entity names relevant to the prompt
    relation_f1: float = Field(0.5, ge=0, le=1)  # relationships accurate
    hallucination_rate: float = Field(0.1, ge=0, le=1)  # share of outputs inventing entities
    type_accuracy: float = Field(0.9, ge=0, le=1)  # share with the right diagram type


class Config(Section):
    run_name: str | None = None  # defaults to the output_dir's folder name
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    phase: PhaseConfig = Field(default_factory=PhaseConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)

    @model_validator(mode="after")
    def _one_operation(self):
        if self.training.resume_from_checkpoint and self.phase.continue_from:
            raise ValueError(
                "set either training.resume_from_checkpoint (finish an interrupted run) or "
                "phase.continue_from (start a new phase), not both"
            )
        return self

    @property
    def name(self) -> str:
        return self.run_name or Path(self.training.output_dir).name

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


# ---- loading ----------------------------------------------------------------------------------


def _key_lines(node, prefix=()) -> dict[tuple, int | str]:
    """Map every key path of a YAML mapping to its 1-based line number."""
    lines = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, key_node.value)
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path))
    return lines


def _valid_keys(model: type[BaseModel], prefix=()) -> list[tuple]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append((*prefix, name))
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys.extend(_valid_keys(field.annotation, (*prefix, name)))
    return keys


def _suggest(path: tuple) -> str:
    valid = _valid_keys(Config)
    siblings = [k[-1] for k in valid if k[:-1] == path[:-1]]
    close = difflib.get_close_matches(path[-1], siblings, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{'.'.join((*path[:-1], close[0]))}'?"
    anywhere = difflib.get_close_matches(path[-1], [k[-1] for k in valid], n=1, cutoff=0.75)
    if anywhere:
        full = next(k for k in valid if k[-1] == anywhere[0])
        return f"did you mean '{'.'.join(full)}'?"
    return "valid keys here: " + ", ".join(siblings)


def _problems(exc: ValidationError, where: str, lines: dict[tuple, int]) -> list[str]:
    out = []
    for err in exc.errors():
        path = tuple(str(p) for p in err["loc"])
        key = ".".join(path)[:200] or "config"
        line = lines.get(path) or lines.get(path[:-1])
        at = f"{where}:{line}" if isinstance(line, int) else (f"--set {key}" if line else where)
        if err["type"] == "extra_forbidden":
            out.append(f"{at}: unknown key '{key}' — {_suggest(path)}")
        else:
            message = err["msg"].removeprefix("Value error, ")
            got = "" if err["type"].startswith("value_error") else f" (got {clip(err.get('input'))})"
            out.append(f"{at}: {key}: {message}{got}")
    return out


def _parse_override(item: str) -> tuple[tuple, object]:
    if "=" not in item:
        raise UserError(f"--set {clip(item)}: expected key=value, e.g. --set training.learning_rate=3e-5")
    key, raw = item.split("=", 1)
    try:
        value = yaml.load(raw, Loader=_StrictLoader) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return tuple(key.strip().split(".")), value


def _apply(raw: dict, path: tuple, value) -> None:
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def parse(raw: dict, where: str = "config", lines: dict | None = None) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError("\n".join(_problems(exc, where, lines or {}))) from None


def clip(value, limit: int = 200) -> str:
    """A user's value as quoted in an error: its repr, at most `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


class _StrictLoader(yaml.SafeLoader):
    """safe_load without the surprises: no aliases or merge keys (an alias bomb expands to gigabytes),
    and a key written twice is an error instead of "the last one wins"."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.MarkedYAMLError(
                problem="aliases (*name) are not allowed in a config — write the value out", problem_mark=mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise yaml.MarkedYAMLError(
                    problem="merge keys (<<) are not allowed in a config — write the keys out",
                    problem_mark=key_node.start_mark,
                )
            if key_node.value in seen:
                raise yaml.MarkedYAMLError(
                    problem=f"key {clip(key_node.value, 60)} is written twice in one section — keep one",
                    problem_mark=key_node.start_mark,
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def read_text(path: Path, what: str) -> str:
    """A user's text file as UTF-8; UserError naming the byte when it is not."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path}:{line}: {what} is not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r}) "
            f"— save it as UTF-8"
        ) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror}) — check the path and its permissions") from None


def loads(text: str, where: str = "config", overrides: Sequence[str] = ()) -> Config:
    """Parse a config's YAML text, apply `--set key=value` overrides, validate; UserError on any problem."""
    try:
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            raw = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0][:200]
        raise UserError(f"{where}{line}: not valid YAML ({problem}) — fix it there") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{where}:1: a config is a mapping of sections (model, data, training, lora, ...)")
    lines = _key_lines(node) if node is not None else {}
    for section, renamed in RENAMED.items():  # a problem with a renamed key points at the line it is on
        lines.update({(section, new): lines[(section, old)] for old, new in renamed.items() if (section, old) in lines})
    for item in overrides:
        key, value = _parse_override(item)
        _apply(raw, key, value)
        lines[key] = "--set"
    return parse(raw, where, lines)


def load(path, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config file (UTF-8), apply `--set key=value` overrides, validate; UserError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found — pass an existing YAML file, e.g. config/quick_test.yaml")
    return loads(read_text(path, "the config"), str(path), overrides)


def save(config: Config, path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
