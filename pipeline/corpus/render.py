"""Audio: FluidSynth rendering, length fitting, level normalisation and format conversion.

FluidSynth renders MIDI to 32-bit float WAV (no dither, so no randomness; its reverb and chorus
are deterministic too). Files are written through :func:`pipeline.atomic.atomic_path`.
libsndfile gives every Ogg stream a random serial number; :func:`fix_ogg_serial` replaces it with
a fixed one (and recomputes the page checksums) so that the same clip is byte-identical run to run.
"""

from __future__ import annotations

import dataclasses
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from pipeline.atomic import atomic_path
from pipeline.corpus.config import SOUNDFONT_PACKAGE

FLUIDSYNTH_TIMEOUT_S = 300
OGG_SERIAL = 0x43484F52  # "CHOR": any fixed value works
# soundfile (format, subtype) per file extension.
FILE_FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"), "ogg": ("OGG", "VORBIS"),
}


class RenderError(RuntimeError):
    """Rendering is impossible (missing tool or SoundFont) or FluidSynth failed."""


@dataclasses.dataclass(frozen=True)
class AudioFormat:
    """How a clip's audio is stored: file extension, sample rate and channel count."""

    extension: str
    sample_rate: int
    channels: int

    def to_json(self) -> dict[str, object]:
        return {"format": self.extension, "subtype": FILE_FORMATS[self.extension][1],
                "sample_rate": self.sample_rate, "channels": self.channels}


def find_fluidsynth(binary: str) -> str:
    """Absolute path of the FluidSynth executable, or a :class:`RenderError` naming the package."""
    path = shutil.which(binary)
    if path is None:
        raise RenderError(
            f"{binary}: FluidSynth not found on PATH; install the Debian/Ubuntu package `fluidsynth` "
            f"(apt-get install fluidsynth) or set corpus.fluidsynth in params.yaml"
        )
    return path


def check_soundfont(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise RenderError(
            f"{path}: SoundFont not found; install the Debian/Ubuntu package `{SOUNDFONT_PACKAGE}` "
            f"(apt-get install {SOUNDFONT_PACKAGE}) or set corpus.soundfont in params.yaml to a General MIDI .sf2"
        )
    return path


def synthesize(midi_path: Path, out_wav: Path, *, fluidsynth: str, soundfont: Path, sample_rate: int,
               gain: float) -> np.ndarray:
    """Render ``midi_path`` with FluidSynth; returns float32 samples of shape (N, 2)."""
    command = [fluidsynth, "-n", "-i", "-q", "-g", f"{gain:g}", "-r", str(sample_rate), "-T", "wav", "-O", "float",
               "-F", str(out_wav), str(soundfont), str(midi_path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=FLUIDSYNTH_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f"{midi_path}: FluidSynth did not finish in {FLUIDSYNTH_TIMEOUT_S} s") from exc
    if result.returncode != 0 or not out_wav.is_file():
        raise RenderError(f"{midi_path}: FluidSynth failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")
    audio, rate = sf.read(out_wav, dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise RenderError(f"{out_wav}: FluidSynth wrote {rate} Hz, expected {sample_rate} Hz")
    return audio


def fit_length(audio: np.ndarray, n_samples: int, fade_samples: int) -> np.ndarray:
    """Cut or zero-pad (N, C) audio to ``n_samples`` and fade out its last ``fade_samples``."""
    out = np.zeros((n_samples, audio.shape[1]), dtype=np.float32)
    keep = min(n_samples, audio.shape[0])
    out[:keep] = audio[:keep]
    fade = min(fade_samples, n_samples)
    if fade > 0:
        out[n_samples - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    return out


def normalisation_gain(mix: np.ndarray, target_rms_dbfs: float, peak_dbfs: float) -> float:
    """Linear gain that brings ``mix`` to the target RMS without its peak exceeding ``peak_dbfs``."""
    rms = float(np.sqrt(np.mean(np.square(mix, dtype=np.float64))))
    peak = float(np.max(np.abs(mix)))
    if peak == 0.0:
        return 1.0
    gain = 10 ** (target_rms_dbfs / 20) / max(rms, 1e-12)
    return min(gain, 10 ** (peak_dbfs / 20) / peak)


def convert(audio: np.ndarray, source_rate: int, target: AudioFormat) -> np.ndarray:
    """(N, C) float audio -> ``target`` rate and channel count (soxr resampling, mono = channel mean)."""
    if target.channels == 1 and audio.shape[1] > 1:
        audio = audio.mean(axis=1, keepdims=True)
    elif target.channels == 2 and audio.shape[1] == 1:
        audio = np.repeat(audio, 2, axis=1)
    if target.sample_rate != source_rate:
        audio = soxr.resample(audio, source_rate, target.sample_rate, quality="HQ")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_OGG_CRC_TABLE = _crc_table()


def _ogg_crc(data: bytes) -> int:
    """Ogg's page checksum: CRC-32, polynomial 0x04C11DB7, no reflection, initial value 0."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC_TABLE[(crc >> 24) ^ byte]
    return crc


def fix_ogg_serial(data: bytes, serial: int = OGG_SERIAL) -> bytes:
    """Rewrite the stream serial number of every Ogg page and recompute the page CRCs."""
    out = bytearray(data)
    position = 0
    while position < len(out):
        if out[position:position + 4] != b"OggS":
            raise RenderError("not an Ogg stream (bad page header)")
        segments = out[position + 26]
        header = 27 + segments
        page_length = header + sum(out[position + 27:position + header])
        struct.pack_into("<I", out, position + 14, serial)
        struct.pack_into("<I", out, position + 22, 0)
        struct.pack_into("<I", out, position + 22, _ogg_crc(bytes(out[position:position + page_length])))
        position += page_length
    return bytes(out)


def write_audio(path: Path, audio: np.ndarray, fmt: AudioFormat) -> None:
    """Atomically write (N, C) float audio in ``fmt`` (already at its rate and channel count)."""
    file_format, subtype = FILE_FORMATS[fmt.extension]
    # Normalisation keeps peaks below -1 dBFS; the clip is only a last guard against wrap-around.
    audio = np.clip(audio, -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(tmp, audio, fmt.sample_rate, format=file_format, subtype=subtype)
        if fmt.extension == "ogg":
            tmp.write_bytes(fix_ogg_serial(tmp.read_bytes()))
