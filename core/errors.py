"""The two ways a command ends early on purpose: bad input (one line saying what is wrong, where, and
how to fix it) and a stop request."""


class UserError(Exception):
    """Bad input from the user. The CLI prints the message as one line and exits with code 2."""


class Stopped(BaseException):
    """A stop request (SIGTERM: the studio's Stop). It unwinds like Ctrl-C, so `finally` blocks clean up,
    and the CLI exits with code 130. Not a KeyboardInterrupt: CPython remembers one that crossed C code
    (a library's embedded `PyRun_String`) even when caught, and then ends the process by SIGINT at exit
    instead of with the code the CLI returned."""


NO_SPACE_WORDS = ("no space left on device", "disk quota exceeded")


def no_space(exc: BaseException) -> bool:
    """Whether an error, or one it was raised from, is a full disk (ENOSPC, EDQUOT): an OSError, or a
    library's own error that only says it in words (DuckDB's IOException, torch's and safetensors'
    write errors)."""
    import errno

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(word in str(exc).lower() for word in NO_SPACE_WORDS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
