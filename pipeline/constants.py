"""Numbers that the whole project agrees on. Each is defined here once and imported elsewhere."""

from __future__ import annotations

#: Frame rate (frames per second) of the codec latents; every frame-aligned condition is
#: resampled to it. JASCO's EnCodec-32kHz runs at 50 fps.
LATENT_FRAME_RATE: float = 50.0

#: Sample rate at which the demo corpus is rendered by FluidSynth.
CORPUS_RENDER_SAMPLE_RATE: int = 44100

#: Version of the on-disk shard layout (bump when the Parquet layout changes).
SHARD_FORMAT_VERSION: int = 1

#: Prefix of every key that chordflow writes into Parquet schema metadata.
METADATA_PREFIX: str = "chordflow."
