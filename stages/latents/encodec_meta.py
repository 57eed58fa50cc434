"""``encodec_24khz``: the ``encodec`` package's 24 kHz model (75 fps, 128-d), weights from a file.

The package builds its released model in code and reads a plain state dict
(``encodec_24khz-d7cc33bc.th``). ``architecture`` defaults to the released model's and only
needs changing for other checkpoints (the tests use a shrunk one with random weights).
Latents, decode and coarse are shared with encodec_32khz (:mod:`stages.latents.encodec_common`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from stages.latents.codec import CodecError
from stages.latents.encodec_common import EncodecCodec
from stages.latents.constants import ENCODEC_24KHZ_CHECKPOINT

#: Bandwidths (kbps) the released 24 kHz model was trained for; they only set the model's n_q menu.
TARGET_BANDWIDTHS: tuple[float, ...] = (1.5, 3.0, 6.0, 12.0, 24.0)


@dataclasses.dataclass(frozen=True)
class EncodecArchitecture:
    """SEANet + residual VQ sizes; the defaults are the released 24 kHz model."""

    sample_rate: int = 24000
    dimension: int = 128
    n_filters: int = 32
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    lstm: int = 2
    causal: bool = True
    norm: str = "weight_norm"
    n_q: int = 32
    bins: int = 1024


@dataclasses.dataclass(frozen=True)
class Encodec24Config:
    """``latents.encodec_24khz`` in params.yaml."""

    checkpoint: str = ENCODEC_24KHZ_CHECKPOINT  # path to the state dict
    coarse_codebooks: int = 1
    architecture: EncodecArchitecture = dataclasses.field(default_factory=EncodecArchitecture)


def build_model(arch: EncodecArchitecture) -> torch.nn.Module:
    """An ``encodec.EncodecModel`` of the given sizes (random weights)."""
    from encodec import EncodecModel
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    sizes = dict(channels=1, dimension=arch.dimension, n_filters=arch.n_filters, n_residual_layers=arch.n_residual_layers,
                 ratios=list(arch.ratios), norm=arch.norm, causal=arch.causal, lstm=arch.lstm)
    quantizer = ResidualVectorQuantizer(dimension=arch.dimension, n_q=arch.n_q, bins=arch.bins)
    return EncodecModel(SEANetEncoder(**sizes), SEANetDecoder(**sizes), quantizer, list(TARGET_BANDWIDTHS),
                        arch.sample_rate, 1, normalize=False, name="chordflow")


def load_encodec(config: Encodec24Config) -> torch.nn.Module:
    path = Path(config.checkpoint)
    if not path.is_file():
        raise CodecError(f"encodec_24khz: checkpoint {path} not found; download {ENCODEC_24KHZ_CHECKPOINT} from "
                         "https://dl.fbaipublicfiles.com/encodec/v0/ where you have network and set "
                         "latents.encodec_24khz.checkpoint to its path")
    model = build_model(config.architecture)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # unpickling or shape mismatch: both mean a wrong file for this config
        raise CodecError(f"encodec_24khz: {path} is not a state dict of the configured architecture: {exc}") from exc
    return model.eval()


class Encodec24kHz(EncodecCodec):
    name = "encodec_24khz"
    config_class = Encodec24Config

    def __init__(self, config: Encodec24Config) -> None:
        super().__init__(config)
        self.model = load_encodec(config)
        self.sample_rate = config.architecture.sample_rate
        self.hop_length = int(math.prod(config.architecture.ratios))
        self.dim = config.architecture.dimension
        self._check_coarse_codebooks()

    def codebook_layers(self) -> list[torch.nn.Module]:
        return self.model.quantizer.vq.layers
