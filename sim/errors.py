"""The error a simulation run raises for a problem with its inputs or its tools."""

__all__ = ["SimError"]


class SimError(Exception):
    """A problem with a design directory, a simulator or a simulation's result, said in one
    line. The command line prints it as ``hardwire: error: ...`` and exits with status 2."""
