"""``encodec_32khz``: JASCO's codec (EnCodec 32 kHz mono, 50 fps, 128-d) through ``transformers``.

Continuous latents are the encoder output before quantisation, as JASCO's flow model predicts
them; ``decode`` runs the decoder on them directly. ``coarse`` quantises with the first codebook
only and looks the code vectors back up (JASCO's drum condition). The checkpoint is a local
directory saved by ``save_pretrained`` / downloaded from the hub, or a hub id (needs network).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from stages.latents.codec import Codec, CodecError
from stages.latents.constants import ENCODEC_32KHZ_HUB_ID


@dataclasses.dataclass(frozen=True)
class Encodec32Config:
    """``latents.encodec_32khz`` in params.yaml."""

    checkpoint: str = ENCODEC_32KHZ_HUB_ID  # local directory or hub id
    coarse_codebooks: int = 1  # residual codebooks summed in ``coarse`` (JASCO: 1)


def load_hf_encodec(checkpoint: str) -> torch.nn.Module:
    """``transformers.EncodecModel.from_pretrained`` with a clear error when it cannot be found."""
    from transformers import EncodecModel

    try:
        model = EncodecModel.from_pretrained(checkpoint)
    except (OSError, ValueError) as exc:
        raise CodecError(
            f"encodec_32khz: cannot load checkpoint {checkpoint!r}: it is not a local directory holding "
            "config.json and the weights, and the hub did not provide it (offline?). Download it where you "
            f"have network (`huggingface-cli download {ENCODEC_32KHZ_HUB_ID} --local-dir DIR`) and set "
            f"latents.encodec_32khz.checkpoint to DIR. Cause: {exc}"
        ) from exc
    return model.eval()


class Encodec32kHz(Codec):
    name = "encodec_32khz"
    config_class = Encodec32Config
    phase_preserving = True

    def __init__(self, config: Encodec32Config) -> None:
        super().__init__(config)
        self.model = load_hf_encodec(config.checkpoint)
        settings = self.model.config
        if settings.audio_channels != 1 or settings.normalize:
            raise CodecError(f"encodec_32khz: {config.checkpoint} is a {settings.audio_channels}-channel model "
                             f"with normalize={settings.normalize}; only mono models without input "
                             "normalisation give chunkable continuous latents")
        layers = len(self.model.quantizer.layers)
        if not 1 <= config.coarse_codebooks <= layers:
            raise CodecError(f"encodec_32khz: coarse_codebooks must be in 1..{layers}, got {config.coarse_codebooks}")
        self.sample_rate = int(settings.sampling_rate)
        self.hop_length = int(math.prod(settings.upsampling_ratios))
        self.dim = int(settings.hidden_size)
        self.coarse_dim = self.dim

    def n_frames(self, n_samples: int) -> int:
        return math.ceil(n_samples / self.hop_length)

    def encode(self, wav: np.ndarray) -> np.ndarray:
        signal = torch.from_numpy(self._check_wav(wav))[None, None]
        with torch.inference_mode():
            latents = self.model.encoder(signal)[0]
        return latents.T.numpy().astype(np.float32)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        hidden = torch.from_numpy(self._check_latents(latents)).T[None]
        with torch.inference_mode():
            wav = self.model.decoder(hidden)
        return wav.reshape(-1).numpy().astype(np.float32)

    def coarse(self, latents: np.ndarray) -> np.ndarray:
        residual = torch.from_numpy(self._check_latents(latents)).T[None]  # (1, D, T)
        total = torch.zeros_like(residual)
        with torch.inference_mode():
            for layer in self.model.quantizer.layers[: self.config.coarse_codebooks]:
                quantised = layer.decode(layer.encode(residual))
                total, residual = total + quantised, residual - quantised
        return total[0].T.numpy().astype(np.float32)
