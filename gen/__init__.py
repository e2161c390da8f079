"""Generators, the ``hardwire`` command line, and the simulation/synthesis drivers."""
