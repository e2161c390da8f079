"""``python -m gen.flow`` (``make synth``): kept as the entry point of the FPGA flow, which
lives in :mod:`gen.synth.board`."""

from .synth.board import main

if __name__ == "__main__":
    raise SystemExit(main())
