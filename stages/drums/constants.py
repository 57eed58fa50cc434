"""Numbers of the drums stage, each defined once."""

from __future__ import annotations

#: Name of the drum source in every Demucs model's ``sources`` list.
DRUMS_SOURCE: str = "drums"
#: Sample rate of every published Demucs model (the loader delivers audio at this rate; a model
#: with another rate still works, the separator then resamples).
DEMUCS_SAMPLE_RATE: int = 44100
#: Channels every published Demucs model expects (mono input is copied to both sides).
DEMUCS_CHANNELS: int = 2
#: Largest random time shift of Demucs' "shift trick" (seconds), as in ``demucs.apply``.
DEMUCS_MAX_SHIFT_S: float = 0.5
#: Where ``demucs.pretrained`` downloads ``.th`` files from (named in the missing-weights error).
DEMUCS_ROOT_URL: str = "https://dl.fbaipublicfiles.com/demucs/"
#: HuggingFace namespace that demucs 4.1 loads named models from first.
DEMUCS_HF_NAMESPACE: str = "adefossez"

#: Sample rate of the codec that encodes the stem (EnCodec 32 kHz in JASCO).
CODEC_SAMPLE_RATE: int = 32000

#: Folder, next to the shards, that holds one stem file per track.
STEMS_DIRNAME: str = "stems"
STEM_SUFFIX: str = ".flac"
STEM_FORMAT: str = "FLAC"
STEM_SUBTYPE: str = "PCM_16"

#: Onsets closer than this (seconds) in the truth count as one onset (kick + hi-hat on a beat).
TRUTH_ONSET_MERGE_S: float = 0.025
#: mir_eval.onset matching window (seconds), as the issue asks.
ONSET_WINDOW_S: float = 0.05
#: Hop (seconds) of the fine onset-strength envelope used to *detect* onsets for evaluation
#: (8 ms; the stored envelope runs at the latent frame rate, too coarse for a 50 ms window).
DETECTION_HOP_S: float = 0.008

#: Added to energies before taking a logarithm (keeps silent stems finite).
ENERGY_EPS: float = 1e-12
