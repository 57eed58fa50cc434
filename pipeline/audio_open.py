"""Which decoder opens a file: libsndfile first, then FFmpeg (torchcodec, imported on first use).

The two backends (:mod:`pipeline.audio_decode`, :mod:`pipeline.audio_ffmpeg`) share their types
through ``audio_decode``; this module alone knows both, so neither imports the other.
"""

from __future__ import annotations

import soundfile

from pipeline.audio_decode import (
    CORRUPT,
    FFMPEG_ONLY_CONTAINERS,
    NOT_AUDIO,
    AudioError,
    SoundFileSource,
    Source,
    short_message,
)
from pipeline.audio_sniff import Sniffed


def open_source(path: str, sniffed: Sniffed) -> Source:
    """Open ``path`` with the first backend that accepts it; errors are classified by content."""
    errors = []
    if sniffed.container not in FFMPEG_ONLY_CONTAINERS:
        try:
            return SoundFileSource(path, sniffed)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            errors.append(f"libsndfile: {short_message(exc)}")
    from pipeline.audio_ffmpeg import FFmpegSource  # imports torch on first use only

    try:
        return FFmpegSource(path, sniffed)
    except AudioError:
        raise
    except (RuntimeError, ValueError) as exc:
        errors.append(f"ffmpeg: {short_message(exc)}")
    if sniffed.known:
        raise AudioError(path, f"cannot decode {sniffed.container} data ({'; '.join(errors)})", CORRUPT)
    raise AudioError(path, f"not an audio file: content matches no known audio format ({'; '.join(errors)})", NOT_AUDIO)
