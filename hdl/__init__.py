"""Amaranth 0.5 components. Weights are constructor arguments (constants), never ports."""
