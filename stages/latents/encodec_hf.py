"""``encodec_32khz``: JASCO's codec (EnCodec 32 kHz mono, 50 fps, 128-d) through ``transformers``.

Continuous latents are the encoder output before quantisation, as JASCO's flow model predicts
them; ``decode`` runs the decoder on them directly. ``coarse`` quantises with the first codebook
only and looks the code vectors back up (JASCO's drum condition). The checkpoint is a local
directory saved by ``save_pretrained`` / downloaded from the hub, or a hub id (needs network).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from stages.latents.codec import CodecError
from stages.latents.encodec_common import EncodecCodec
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


class Encodec32kHz(EncodecCodec):
    name = "encodec_32khz"
    config_class = Encodec32Config

    def __init__(self, config: Encodec32Config) -> None:
        super().__init__(config)
        self.adopt(load_hf_encodec(config.checkpoint), config.checkpoint)

    def adopt(self, model: torch.nn.Module, source: str) -> None:
        """Use ``model`` (a transformers EncodecModel from ``source``): checks it, takes its sizes."""
        self.model = model
        settings = self.model.config
        if settings.audio_channels != 1 or settings.normalize:
            raise CodecError(f"{self.name}: {source} is a {settings.audio_channels}-channel model "
                             f"with normalize={settings.normalize}; only mono models without input "
                             "normalisation give chunkable continuous latents")
        self.sample_rate = int(settings.sampling_rate)
        self.hop_length = int(math.prod(settings.upsampling_ratios))
        self.dim = int(settings.hidden_size)
        self._check_coarse_codebooks()

    def codebook_layers(self) -> list[torch.nn.Module]:
        return self.model.quantizer.layers
