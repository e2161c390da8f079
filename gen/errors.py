"""The one exception type the command line turns into a one-line error and exit code 2."""


class UserError(Exception):
    """Bad input: a malformed file, an impossible configuration, an unwritable path."""
