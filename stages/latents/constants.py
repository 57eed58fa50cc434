"""Numbers of the latents stage, each defined once."""

from __future__ import annotations

#: Codec the stage uses when params.yaml names none: the offline codec that keeps harmony best
#: (see ``chordflow latents eval``; measured in the issue-6 closing note).
DEFAULT_CODEC: str = "logspec_griffinlim"

#: The real EnCodec checkpoints (hub ids / file names); none can be downloaded in this workplace.
ENCODEC_32KHZ_HUB_ID: str = "facebook/encodec_32khz"
ENCODEC_24KHZ_CHECKPOINT: str = "encodec_24khz-d7cc33bc.th"

#: Natural-log floor of every log-magnitude latent (amplitude 1e-5 = -100 dBFS).
LOG_FLOOR: float = 1e-5

#: Chordino is tuned for 44.1 kHz; harmony is measured there.
CHORDINO_RATE: int = 44100
