"""The ``chordflow`` command: the top layer, which alone names every package's subcommands.

``pipeline/`` (data plane) knows no stage or model; ``stages/`` knows no model; this package wires
them into one command line (``chordflow`` or ``python -m chordflow``, also under ``torchrun -m``).
"""
