"""How a request is put to the model: one wording for training, evaluation, the CLI and the studio.

Real requirements rarely name the diagram they want, so the wanted type is an input of its own
(a dataset row's `diagram_type`, the playground's selector, `--type` on the command line) and is
stated in the user message the same way everywhere. A request without a type is passed as written.
"""

TYPE_NAMES = {
    "class": "class diagram",
    "sequence": "sequence diagram",
    "activity": "activity diagram",
    "usecase": "use case diagram",
    "state": "state diagram",
    "component": "component diagram",
    "er": "entity-relationship (ER) diagram",
}


def request(text: str, diagram_type: str | None = None) -> str:
    """The user message: the wanted diagram type on the first line, then the requirement."""
    if not diagram_type:
        return text
    if diagram_type not in TYPE_NAMES:
        raise ValueError(f"unknown diagram type {diagram_type!r}: one of {', '.join(TYPE_NAMES)}")
    return f"Write a PlantUML {TYPE_NAMES[diagram_type]} for this requirement.\n\n{text}"


def chat_prompt(tokenizer, message: str) -> str:
    """The prompt exactly as the model sees it in training and generation: the tokenizer's chat
    template with `message` (see `request`) as the one user message, ready for the assistant's answer."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
    )
