"""What both EnCodec backends share: continuous latents, decoding, and the coarse drum view.

Subclasses load ``self.model`` (an encoder/decoder pair with a residual VQ) and set
``sample_rate``, ``hop_length`` and ``dim``; they name the quantizer's codebook layers through
:meth:`codebook_layers` since ``transformers`` and the ``encodec`` package nest them differently.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from stages.latents.codec import Codec, CodecError


class EncodecCodec(Codec):
    phase_preserving = True
    model: torch.nn.Module

    def codebook_layers(self) -> Sequence[torch.nn.Module]:
        """The residual VQ layers, first (coarsest) first."""
        raise NotImplementedError

    def _check_coarse_codebooks(self) -> None:
        layers = len(self.codebook_layers())
        if not 1 <= self.config.coarse_codebooks <= layers:
            raise CodecError(f"{self.name}: coarse_codebooks must be in 1..{layers}, got {self.config.coarse_codebooks}")
        self.coarse_dim = self.dim

    def n_frames(self, n_samples: int) -> int:
        return math.ceil(n_samples / self.hop_length)

    def encode(self, wav: np.ndarray) -> np.ndarray:
        """(N,) float32 -> (T, D): encoder output before quantisation."""
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
        """(T, D) -> (T, D): the sum of the first ``coarse_codebooks`` quantised residuals."""
        residual = torch.from_numpy(self._check_latents(latents)).T[None]  # (1, D, T)
        total = torch.zeros_like(residual)
        with torch.inference_mode():
            for layer in self.codebook_layers()[: self.config.coarse_codebooks]:
                quantised = layer.decode(layer.encode(residual))
                total, residual = total + quantised, residual - quantised
        return total[0].T.numpy().astype(np.float32)
