"""The one error type a user sees: a single line saying what is wrong, where, and how to fix it."""


class UserError(Exception):
    """Bad input from the user. The CLI prints the message as one line and exits with code 2."""
