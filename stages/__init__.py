"""chordflow feature stages (one module per stage, each registered by name)."""
