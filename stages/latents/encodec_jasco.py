"""``jasco_encodec``: the EnCodec 32 kHz copy inside a released JASCO checkpoint, as a codec.

Meta's JASCO releases (``facebook/jasco-chords-drums-400M`` etc.) ship ``state_dict.bin``:
``{"best_state": flat state dict, "xp.cfg": YAML text, "version", "exported": True}``. The drums
conditioner registers the compression model as a submodule, so ``best_state`` carries the whole
transformers ``EncodecModel`` under :data:`ENCODEC_PREFIX` (116 tensors for the real model), and
AudioCraft's strict load makes that copy the codec JASCO encodes drums and decodes audio with.
Building the codec from it gives chordflow exactly JASCO's codec with no hub download.

The ``EncodecConfig`` is read off the tensor shapes (filters, channels, down-sampling ratios from
the strided kernels, LSTM depth, residual layers, codebooks); what shapes cannot tell keeps the
32 kHz model's value (32000 Hz, dilation growth 2, reflect padding, non-causal, no normalisation).
Both weight-norm spellings load: ``conv.parametrizations.weight.original0/1`` (current
transformers/torch) and ``conv.weight_g/weight_v`` (older exports). Latents, ``decode`` and
``coarse`` (codebook 0's nearest code, decoded: JASCO's drum condition) are those of
:class:`stages.latents.encodec_common.EncodecCodec`.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from stages.latents.codec import CodecError
from stages.latents.encodec_common import EncodecCodec
from stages.latents.encodec_hf import Encodec32kHz

#: Where the EnCodec copy sits in ``best_state`` (the drums conditioner's compression model).
ENCODEC_PREFIX = "condition_provider.conditioners.self_wav.compression_model.model."
STATE_FILE = "state_dict.bin"
#: What to point ``latents.jasco_encodec.checkpoint`` at, in error messages.
WHAT_TO_GIVE = ("a JASCO checkpoint folder holding state_dict.bin, as downloaded from "
                "facebook/jasco-chords-drums-400M etc. (or that state_dict.bin itself)")

#: facebook/encodec_32khz's settings that the weights' shapes cannot tell (SPEC §1).
FIXED_32KHZ: dict[str, Any] = dict(sampling_rate=32000, norm_type="weight_norm", pad_mode="reflect",
                                   use_causal_conv=False, dilation_growth_rate=2, normalize=False,
                                   trim_right_ratio=1.0, chunk_length_s=None, overlap=None)

#: (new spelling, old spelling) of the two weight-norm tensors of a conv.
_WEIGHT_NORM_NAMES = ((".parametrizations.weight.original0", ".weight_g"),
                      (".parametrizations.weight.original1", ".weight_v"))


@dataclasses.dataclass(frozen=True)
class JascoEncodecConfig:
    """``latents.jasco_encodec`` in params.yaml."""

    #: A JASCO checkpoint folder (holding state_dict.bin) or the state_dict.bin file; required.
    checkpoint: str | None = None
    coarse_codebooks: int = 1  # residual codebooks summed in ``coarse`` (JASCO: 1)


def load_jasco_state(path: str | Path) -> dict[str, Any]:
    """The released ``state_dict.bin`` of ``path`` (a folder holding it, or the file), weights only."""
    path = Path(path).expanduser()
    file = path / STATE_FILE if path.is_dir() else path
    if not file.is_file():
        raise CodecError(f"jasco_encodec: {file} does not exist; the checkpoint must be {WHAT_TO_GIVE}")
    try:
        try:
            package = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            package = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise CodecError(f"jasco_encodec: {file} is not a released JASCO state_dict.bin (it does not load with "
                         f"torch.load(weights_only=True); a training solver_checkpoint.th does not either); the "
                         f"checkpoint must be {WHAT_TO_GIVE}. Cause: {exc}") from exc
    best_state = package.get("best_state") if isinstance(package, Mapping) else None
    if not isinstance(best_state, Mapping) or not all(isinstance(v, torch.Tensor) for v in best_state.values()):
        keys = sorted(map(str, package)) if isinstance(package, Mapping) else type(package).__name__
        raise CodecError(f"jasco_encodec: {file} is not in the released form {{'best_state': flat state dict, "
                         f"'xp.cfg', 'version', 'exported'}} (found {keys}); the checkpoint must be {WHAT_TO_GIVE}")
    return dict(package)


def encodec_from_jasco_state(best_state: Mapping[str, torch.Tensor], source: str) -> torch.nn.Module:
    """The transformers ``EncodecModel`` whose weights ``best_state`` carries under :data:`ENCODEC_PREFIX`.

    The configuration is inferred from the shapes; the weights load strictly (either weight-norm
    spelling). ``source`` names the file in errors."""
    from transformers import EncodecConfig, EncodecModel

    state = {k[len(ENCODEC_PREFIX):]: v for k, v in best_state.items() if k.startswith(ENCODEC_PREFIX)}
    if not state:
        raise CodecError(f"jasco_encodec: {source} holds no EnCodec weights under {ENCODEC_PREFIX!r} (a JASCO "
                         f"model without the drums condition?); the checkpoint must be {WHAT_TO_GIVE}")
    settings = infer_encodec_settings(state, source)
    config = EncodecConfig(**settings)
    _fit_bandwidth(config, settings["target_bandwidths"], _count_codebooks(state), source)
    model = EncodecModel(config)
    expected = model.state_dict()
    renamed = _match_weight_norm_names(state, expected.keys())
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    if missing or unexpected:
        raise CodecError(f"jasco_encodec: {source}: the EnCodec weights under {ENCODEC_PREFIX!r} do not fit the "
                         f"model their shapes describe; missing keys: {', '.join(missing) or 'none'}; "
                         f"unexpected keys: {', '.join(unexpected) or 'none'}")
    try:
        model.load_state_dict(renamed, strict=True)
    except RuntimeError as exc:  # shape mismatches
        raise CodecError(f"jasco_encodec: {source}: the EnCodec weights do not load: {exc}") from exc
    return model.eval()


def infer_encodec_settings(state: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
    """``EncodecConfig`` keyword arguments for the EnCodec state dict ``state`` (no prefix)."""
    layers = _encoder_layers(state)
    try:
        kinds = [kind for _, kind in layers]
        first_lstm = kinds.index("lstm")
        convs = [i for i, kind in layers[:first_lstm] if kind == "conv"]
        first_conv, downsampling = convs[0], convs[1:]
        blocks = [i for i, kind in layers[:first_lstm] if kind == "block"]
        last_conv = [i for i, kind in layers[first_lstm:] if kind == "conv"][-1]
        first = _conv_weight(state, f"encoder.layers.{first_conv}")
        last = _conv_weight(state, f"encoder.layers.{last_conv}")
        kernels = [_conv_weight(state, f"encoder.layers.{i}").shape[-1] for i in downsampling]
        block = _conv_weight(state, f"encoder.layers.{blocks[0]}.block.1")
        lstm = {int(m.group(1)) for k in state
                if (m := re.fullmatch(rf"encoder\.layers\.{layers[first_lstm][0]}\.lstm\.weight_ih_l(\d+)", k))}
        embed = state["quantizer.layers.0.codebook.embed"]
    except (ValueError, IndexError, KeyError) as exc:
        raise CodecError(f"jasco_encodec: {source}: the tensors under {ENCODEC_PREFIX!r} are not a transformers "
                         f"EncodecModel's (cannot find {exc}); encoder keys seen: "
                         f"{', '.join(sorted(k for k in state if k.startswith('encoder.'))[:20])}") from exc
    if any(k % 2 for k in kernels) or not downsampling or len(blocks) % len(downsampling):
        raise CodecError(f"jasco_encodec: {source}: unexpected encoder layout (down-sampling kernels {kernels}, "
                         f"{len(blocks)} residual blocks)")
    num_filters = int(first.shape[0])
    n_codebooks = _count_codebooks(state)
    codebook_size = int(embed.shape[0])
    ratios = [k // 2 for k in reversed(kernels)]
    hop = math.prod(ratios)
    frame_rate = math.ceil(FIXED_32KHZ["sampling_rate"] / hop)
    return dict(
        FIXED_32KHZ,
        audio_channels=int(first.shape[1]),
        num_filters=num_filters,
        kernel_size=int(first.shape[-1]),
        hidden_size=int(last.shape[0]),
        last_kernel_size=int(last.shape[-1]),
        upsampling_ratios=ratios,
        num_residual_layers=len(blocks) // len(downsampling),
        residual_kernel_size=int(block.shape[-1]),
        compress=max(1, num_filters // int(block.shape[0])),
        use_conv_shortcut=any(".shortcut." in k for k in state),
        num_lstm_layers=len(lstm),
        codebook_size=codebook_size,
        codebook_dim=int(embed.shape[1]),
        target_bandwidths=[n_codebooks * math.ceil(math.log2(codebook_size)) * frame_rate / 1000],
    )


def _encoder_layers(state: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(index, "conv" | "block" | "lstm") of the encoder's layers with weights, in order."""
    kinds: dict[int, str] = {}
    for key in state:
        if m := re.match(r"encoder\.layers\.(\d+)\.(conv|block|lstm)\.", key):
            kinds[int(m.group(1))] = m.group(2)
    return sorted(kinds.items())


def _conv_weight(state: Mapping[str, torch.Tensor], layer: str) -> torch.Tensor:
    """The (out, in, kernel) direction tensor of the conv ``layer`` in whichever spelling it has."""
    for suffix in (".conv.parametrizations.weight.original1", ".conv.weight_v", ".conv.weight"):
        if layer + suffix in state:
            return state[layer + suffix]
    raise KeyError(f"{layer}.conv weight")


def _count_codebooks(state: Mapping[str, Any]) -> int:
    return len({m.group(1) for k in state if (m := re.fullmatch(r"quantizer\.layers\.(\d+)\.codebook\.embed", k))})


def _fit_bandwidth(config: Any, bandwidths: list[float], n_codebooks: int, source: str) -> None:
    """Make ``config.num_quantizers`` equal the codebooks present despite float rounding."""
    if config.num_quantizers != n_codebooks:
        per_codebook = config.codebook_nbits * config.frame_rate / 1000
        config.target_bandwidths = [(n_codebooks + 0.5) * per_codebook]
    if config.num_quantizers != n_codebooks:
        raise CodecError(f"jasco_encodec: {source}: cannot configure {n_codebooks} codebooks (bandwidths {bandwidths})")


def _match_weight_norm_names(state: Mapping[str, torch.Tensor], expected: Any) -> dict[str, torch.Tensor]:
    """``state`` with each weight-norm tensor renamed to the spelling the built model uses."""
    expected = set(expected)
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in expected:
            for new, old in _WEIGHT_NORM_NAMES:
                for have, want in ((new, old), (old, new)):
                    if key.endswith(have) and key[: -len(have)] + want in expected:
                        key = key[: -len(have)] + want
                        break
                else:
                    continue
                break
        renamed[key] = value
    return renamed


class JascoEncodec(Encodec32kHz):
    """EnCodec 32 kHz exactly as a released JASCO model carries it (``state_dict.bin``'s copy)."""

    name = "jasco_encodec"
    config_class = JascoEncodecConfig

    def __init__(self, config: JascoEncodecConfig) -> None:
        EncodecCodec.__init__(self, config)
        if not config.checkpoint:
            raise CodecError(f"jasco_encodec: set latents.jasco_encodec.checkpoint to {WHAT_TO_GIVE}")
        package = load_jasco_state(config.checkpoint)
        self.adopt(encodec_from_jasco_state(package["best_state"], str(config.checkpoint)), str(config.checkpoint))

    def codes(self, latents: np.ndarray, n_codebooks: int = 1) -> np.ndarray:
        """(T, D) latents -> (n_codebooks, T) int64 residual VQ codes (row 0: JASCO's drum codes)."""
        residual = torch.from_numpy(self._check_latents(latents)).T[None]
        rows = []
        with torch.inference_mode():
            for layer in self.codebook_layers()[:n_codebooks]:
                indices = layer.encode(residual)
                residual = residual - layer.decode(indices)
                rows.append(indices[0])
        return torch.stack(rows).numpy().astype(np.int64)
