"""Library chatter off the user's terminal.

Importing the model stack writes lines nobody can act on: torch's deprecation warnings as torchao
registers its enums (on `import peft` or `import unsloth`), and bitsandbytes' notice that an optional
CPU kernel package is missing. `stderr_to(log)` points the process's stderr — file descriptor 2, so
Python's warnings, the libraries' loggers and their C code alike — at a log file while a block runs
(the imports), then appends it to the log and says so in one line. Imports are cached: once the stack is
imported inside the block, later imports of it are silent, and our own messages stay on the terminal.
"""

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core import paths

STACK = ("peft", "bitsandbytes")  # what the generation engine imports; unsloth (training) imports both


def command_log(command: str) -> Path:
    """The log of a command that runs in the user's terminal (evaluate, compare, generate, ...)."""
    return paths.home() / "logs" / f"{command}.log"


_held: list[tuple[Path, bytes]] = []  # chatter of a command that has not yet ended: (log, what was written)


@contextmanager
def stderr_to(log: Path, hold: bool = False) -> Iterator[None]:
    """While the block runs, whatever is written to stderr is caught; then it is appended to `log` with one
    line on the terminal naming the log — or, with `hold`, kept until the command ends (`release`): a
    command refused for bad input writes nothing, not even a log."""
    sys.stderr.flush()
    terminal = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(terminal, 2)
            os.close(terminal)
        caught.seek(0)
        written = caught.read()
    if written:
        _held.append((log, written))
        if not hold:
            release()


def release(keep: bool = True) -> None:
    """Append the chatter caught so far to its logs, one line each on the terminal (`keep`), or forget it
    (a command that ended on bad input)."""
    while _held:
        log, written = _held.pop(0)
        if keep:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as out:
                out.write(written)
            lines = written.count(b"\n")
            print(f"library warnings: {lines} line(s) in {log}", file=sys.stderr, flush=True)


def import_libraries() -> None:
    """Import the stack (inside `stderr_to`)."""
    import importlib
    import importlib.util

    for name in STACK:
        if importlib.util.find_spec(name):  # bitsandbytes comes with unsloth; a peft-only install lacks it
            importlib.import_module(name)


def import_stack(command: str) -> None:
    """Before a command loads a model: the stack imported with its warnings in the command's log."""
    with stderr_to(command_log(command), hold=True):
        import_libraries()
