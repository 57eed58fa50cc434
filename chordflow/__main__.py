"""``python -m chordflow ...`` (and ``torchrun --nproc_per_node N -m chordflow train ...``)."""

import sys

from chordflow.cli import main

sys.exit(main())
