"""The two ways a command ends early on purpose: bad input (one line saying what is wrong, where, and
how to fix it) and a stop request."""


class UserError(Exception):
    """Bad input from the user. The CLI prints the message as one line and exits with code 2."""


class Stopped(BaseException):
    """A stop request (SIGTERM: the studio's Stop). It unwinds like Ctrl-C, so `finally` blocks clean up,
    and the CLI exits with code 130. Not a KeyboardInterrupt: CPython remembers one that crossed C code
    (a library's embedded `PyRun_String`) even when caught, and then ends the process by SIGINT at exit
    instead of with the code the CLI returned."""
