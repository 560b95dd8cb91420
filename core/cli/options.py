"""Options that mirror a config key take their type, default and help from the schema in core/config.py,
so a default or its explanation is written once, as the field's `Field(default, description=...)`."""

from pydantic import BaseModel

from core.config import Config


def schema_field(key: str):
    """The pydantic field of a config key such as "evaluation.batch_size"."""
    section, name = key.split(".")
    model = Config.model_fields[section].annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise KeyError(f"{key}: {section} is not a section of the config")
    return model.model_fields[name]


def config_option(
    parser, flag: str, key: str, *, lead: str = "", default_text: str | None = None, overrides: bool = False, **kwargs
) -> None:
    """Add `flag`, mirroring config `key`: help = `lead` + the field's description + its default.

    `overrides`: the flag's own default is None (it only overrides when given) while the help still
    names the schema's default; `default_text` replaces the default as said in the help."""
    field = schema_field(key)
    default = field.get_default(call_default_factory=True)
    kind = field.annotation if field.annotation in (int, float, str) else str
    shown = default_text if default_text is not None else default
    help_text = f"{lead}{field.description} (default: {shown})".replace("%", "%%")  # argparse formats help with %
    parser.add_argument(flag, type=kind, default=None if overrides else default, help=help_text, **kwargs)


DECODING = ("repetition", "dry_multiplier", "dry_base", "dry_allowed_length", "temperature", "top_k", "top_p", "seed")


def decoding_options(parser) -> None:
    """How each next token is chosen (evaluate, compare, generate and the playground's worker)."""
    for name in DECODING:
        config_option(parser, "--" + name.replace("_", "-"), "evaluation." + name)


def evaluation_config(args):
    """The decoding options (and those of evaluate's that a command has) as an EvaluationConfig; a value
    the schema refuses is a UserError naming the flag."""
    from pydantic import ValidationError

    from core.config import EvaluationConfig
    from core.errors import UserError

    given = {key: getattr(args, key, None) for key in (*DECODING, "max_new_tokens", "batch_size", "samples")}
    try:
        return EvaluationConfig(**{key: value for key, value in given.items() if value is not None})
    except ValidationError as exc:
        problem = exc.errors()[0]
        if not problem["loc"]:  # a rule over several values: the samples asked without sampling
            raise UserError(f"--samples {args.samples}: {problem['msg'].removeprefix('Value error, ')}") from None
        flag = "--" + str(problem["loc"][0]).replace("_", "-")
        raise UserError(f"{flag} {problem['input']}: {problem['msg'].lower()}") from None
