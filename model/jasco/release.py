"""Meta's released JASCO checkpoints, read and written in their own form.

A release folder (``facebook/jasco-chords-drums-400M``, ``-1B``, ``jasco-chords-drums-melody-400M``,
``-1B``, downloaded) holds ``state_dict.bin`` — ``{"best_state": flat state dict, "xp.cfg": YAML
text of the training config, "version", "exported": True}``, plain data read with
``torch.load(weights_only=True)`` — and ``compression_state_dict.bin``, a pointer to EnCodec
32 kHz whose weights travel inside ``best_state`` under :data:`ENCODEC_PREFIX`. The sizes come
from the file's own config (so the 1B models need nothing else); every architecture setting that
chordflow's JASCO network does not implement is refused by name, and the weights load strictly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from model.config import ModelConfig
from model.network.jasco import JascoFlowModel
from model.plain_file import PlainFileError, read_plain_file
from stages.latents.encodec_jasco import ENCODEC_PREFIX, STATE_FILE

COMPRESSION_FILE = "compression_state_dict.bin"
#: What the released ``compression_state_dict.bin`` points to.
ENCODEC_POINTER = "facebook/encodec_32khz"
RELEASES = ("facebook/jasco-chords-drums-400M", "facebook/jasco-chords-drums-1B",
            "facebook/jasco-chords-drums-melody-400M", "facebook/jasco-chords-drums-melody-1B")
#: The AudioCraft version string chordflow's exports carry (the one the fixtures were made with).
EXPORT_VERSION = "1.4.0a2"
#: AudioCraft's flow-matching sigma_min (a constant of its solver, not in the config).
JASCO_SIGMA_MIN = 1e-5

#: transformer_lm settings the network implements: key -> accepted values.
SUPPORTED_LM: dict[str, tuple[Any, ...]] = {
    "activation": ("gelu",), "norm": ("layer_norm",), "norm_first": (True,), "causal": (False,),
    "bias_ff": (False,), "bias_attn": (False,), "bias_proj": (False,), "layer_scale": (None,),
    "positional_embedding": ("sin",), "xpos": (False,), "qk_layer_norm": (False,),
    "qk_layer_norm_cross": (False,), "kv_repeat": (1,), "skip_connections": (False,),
}


class ReleaseError(ValueError):
    """A file is not a released JASCO checkpoint chordflow can run, with what is wrong."""


@dataclass(frozen=True, eq=False)
class JascoRelease:
    """A released checkpoint's contents, split into the network's and the codec's weights."""

    source: Path
    version: str
    model_config: ModelConfig
    #: The flow network's weights, AudioCraft names (model/network/jasco.py).
    weights: dict[str, torch.Tensor]
    #: The EnCodec copy, names without :data:`ENCODEC_PREFIX`.
    codec_weights: dict[str, torch.Tensor]
    latent_mean: float
    latent_std: float
    segment_seconds: float
    sample_rate: int
    #: ``attribute_dropout`` / ``classifier_free_guidance`` as the file gives them (for the export).
    dropout: dict[str, Any]


def state_file(path: str | Path) -> Path:
    """``state_dict.bin`` of a release folder (or the file itself); a clear error if absent."""
    path = Path(path)
    file = path / STATE_FILE if path.is_dir() else path
    if not file.is_file():
        raise ReleaseError(
            f"{file}: not found. A released JASCO model is a folder holding {STATE_FILE} (and "
            f"{COMPRESSION_FILE}), as downloaded from one of {', '.join(RELEASES)} "
            f"(`huggingface-cli download <name> --local-dir DIR` where there is network).")
    return file


def is_release(path: str | Path) -> bool:
    """Whether ``path`` names a release folder or its ``state_dict.bin`` (by layout, not by content)."""
    path = Path(path)
    return (path.is_dir() and (path / STATE_FILE).is_file()) or path.name == STATE_FILE


def read_release(path: str | Path) -> JascoRelease:
    """Read and check a release; raises :class:`ReleaseError` naming the file and the reason."""
    file = state_file(path)
    try:
        payload = read_plain_file(file)
    except PlainFileError as exc:
        raise ReleaseError(str(exc)) from None
    return release_from_payload(payload, file)


def release_from_payload(payload: Any, file: Path) -> JascoRelease:
    """A release from the already read contents of its ``state_dict.bin``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("best_state"), Mapping) \
            or not isinstance(payload.get("xp.cfg"), str):
        keys = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise ReleaseError(f"{file}: not an exported JASCO state dict (expected keys 'best_state' and 'xp.cfg' "
                           f"as a YAML string, found {keys}); a training-solver checkpoint must be exported first")
    xp = resolved_config(payload["xp.cfg"], file)
    state = dict(payload["best_state"])
    codec = {k[len(ENCODEC_PREFIX):]: v for k, v in state.items() if k.startswith(ENCODEC_PREFIX)}
    weights = {k: v for k, v in state.items() if not k.startswith(ENCODEC_PREFIX)}
    config = model_config_of(xp, weights, file)
    check_weights(config, weights, file)
    if not codec:
        raise ReleaseError(f"{file}: best_state holds no EnCodec weights under {ENCODEC_PREFIX!r}")
    return JascoRelease(
        source=file, version=str(payload.get("version", "")), model_config=config,
        weights={k: v.float() for k, v in weights.items()}, codec_weights=codec,
        latent_mean=float(xp["compression_model_latent_mean"]), latent_std=float(xp["compression_model_latent_std"]),
        segment_seconds=float(xp["dataset"]["segment_duration"]), sample_rate=int(xp["sample_rate"]),
        dropout={"attribute_dropout": xp.get("attribute_dropout", {}),
                 "classifier_free_guidance": xp.get("classifier_free_guidance", {})})


#: Top-level sections of ``xp.cfg`` the network and its conditions need (resolved).
NEEDED_SECTIONS = ("transformer_lm", "conditioners", "fuser", "attribute_dropout", "classifier_free_guidance",
                   "compression_model_framerate", "compression_model_latent_dim", "compression_model_latent_mean",
                   "compression_model_latent_std", "sample_rate")


def resolved_config(text: str, file: Path) -> dict[str, Any]:
    """The sections of the YAML config chordflow needs, with their ``${...}`` interpolations resolved.

    Only these sections are resolved: the rest (paths with ``${oc.env:USER}``, ``???`` fields of the
    training setup) means nothing here."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        root = OmegaConf.create(text)
        out = {}
        for key in NEEDED_SECTIONS:
            if key not in root:
                raise ReleaseError(f"{file}: xp.cfg lacks {key!r}")
            value = root[key]
            out[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        out["dataset"] = {"segment_duration": root.dataset.segment_duration}
    except OmegaConfBaseException as exc:
        raise ReleaseError(f"{file}: cannot read xp.cfg ({type(exc).__name__}: {exc})") from None
    return out


def model_config_of(xp: Mapping[str, Any], weights: Mapping[str, torch.Tensor], file: Path) -> ModelConfig:
    """The network's sizes from the file's own config (and the text width from the weights)."""
    lm, conditioners = xp["transformer_lm"], xp["conditioners"]
    unsupported = {k: lm.get(k) for k, ok in SUPPORTED_LM.items() if lm.get(k, ok[0]) not in ok}
    if not (lm.get("memory_efficient") or lm.get("custom")):
        unsupported["custom/memory_efficient"] = False  # torch MultiheadAttention key names (mha.*)
    fuser = xp["fuser"]
    if fuser.get("cross") != ["description"] or fuser.get("sum") or fuser.get("prepend"):
        unsupported["fuser"] = fuser
    if unsupported:
        raise ReleaseError(f"{file}: transformer settings chordflow's JASCO network does not implement: {unsupported}")
    missing = [name for name in ("self_wav", "description", "chords") if name not in conditioners]
    if missing:
        raise ReleaseError(f"{file}: conditioners {missing} absent; chordflow runs the chords-drums(-melody) models")
    text_weight = weights.get("condition_provider.conditioners.description.output_proj.weight")
    if text_weight is None:
        raise ReleaseError(f"{file}: no text projection (condition_provider.conditioners.description.output_proj)")
    drums = conditioners["self_wav"]["drum_latents"]
    chords = conditioners["chords"]["chords_emb"]
    melody = conditioners.get("melody", {}).get("melody")
    return ModelConfig(
        architecture="jasco", dim=int(lm["dim"]), layers=int(lm["num_layers"]), heads=int(lm["num_heads"]),
        mlp_ratio=float(lm["hidden_scale"]), latent_dim=int(lm["flow_dim"]),
        drum_dim=int(drums["compression_model_latent_dim"]), text_dim=int(text_weight.shape[1]),
        chord_vocab_size=int(chords["card"]), chord_embed_dim=int(chords["out_dim"]),
        drum_embed_dim=int(drums["out_dim"]), drum_pool_frames=int(drums["blurring_factor"]),
        melody_embed_dim=int(melody["out_dim"]) if melody else 0,
        melody_bins=int(melody["card"]) if melody else ModelConfig.__dataclass_fields__["melody_bins"].default,
        frames_per_token=1, condition_every_layer=False, sigma_min=JASCO_SIGMA_MIN,
        frame_rate=float(xp["compression_model_framerate"]))


def check_weights(config: ModelConfig, weights: Mapping[str, torch.Tensor], file: Path | str) -> None:
    """Strict: the same names and shapes as the network; the error lists what is missing/unexpected."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation (a 1B model is 4 GB)
        expected = {k: tuple(v.shape) for k, v in JascoFlowModel(config).state_dict().items()}
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if tuple(weights[k].shape) != expected[k])
    if missing or unexpected or wrong:
        def listed(keys: list[str]) -> str:
            return ", ".join(keys[:12]) + (f" ... ({len(keys)} in all)" if len(keys) > 12 else "")
        parts = [f"missing: {listed(missing)}" if missing else "", f"unexpected: {listed(unexpected)}" if unexpected else "",
                 "wrong shape: " + listed([f"{k} {tuple(weights[k].shape)} != {expected[k]}" for k in wrong]) if wrong else ""]
        raise ReleaseError(f"{file}: weights do not match the JASCO network its config describes; "
                           + "; ".join(p for p in parts if p))


def load_network(release: JascoRelease) -> JascoFlowModel:
    """The release's flow network with its weights (strict), in eval mode."""
    model = JascoFlowModel(release.model_config)
    model.load_state_dict(release.weights, strict=True)
    return model.eval()


# ----------------------------------------------------------------------------- writing
def export_config(config: ModelConfig, latent_mean: float, latent_std: float, segment_seconds: float,
                  sample_rate: int, dropout: Mapping[str, Any] | None = None, t5_name: str = "t5-base") -> dict[str, Any]:
    """The minimal, fully resolved ``xp.cfg`` AudioCraft's builder needs for ``config`` (SPEC §1).

    ``transformer_lm.emb_lr`` and ``two_step_cfg`` are left out: AudioCraft's builder passes unknown
    keys to torch's TransformerEncoderLayer, which refuses them."""
    if config.architecture != "jasco":
        raise ReleaseError(f"only a model of the jasco architecture exports to JASCO's form (this one is "
                           f"{config.architecture!r}; train with model.preset: jasco)")
    melody = config.melody_embed_dim > 0
    cond_dropout = 0.2 if melody else 0.3  # JASCO's recipes: chords-drums-melody / chords-drums
    symbolic = {"chords": 0.5, "melody": 0.5} if melody else {"chords": 0.3}
    default_dropout = {"attribute_dropout": {"text": {"description": 0.0}, "symbolic": symbolic,
                                             "wav": {"self_wav": 0.5 if melody else 0.3}},
                       "classifier_free_guidance": {"training_dropout": cond_dropout, "inference_coef": 3.0}}
    dropout = {**default_dropout, **(dropout or {})}
    conditioners: dict[str, Any] = {
        "self_wav": {"model": "drum_latents", "drum_latents": {
            "sample_rate": sample_rate, "out_dim": config.drum_embed_dim, "blurring_factor": config.drum_pool_frames,
            "cache_path": None, "read_only_cache": True, "compression_model_latent_dim": config.drum_dim,
            "compression_model_framerate": config.frame_rate, "segment_duration": segment_seconds}},
        "description": {"model": "t5", "t5": {"name": t5_name, "finetune": False, "word_dropout": 0.3,
                                              "normalize_text": False}},
        "chords": {"model": "chords_emb", "chords_emb": {"card": config.chord_vocab_size, "out_dim": config.chord_embed_dim}},
    }
    if melody:
        conditioners["melody"] = {"model": "melody", "melody": {"card": config.melody_bins, "out_dim": config.melody_embed_dim}}
    lm = {"dim": config.dim, "num_heads": config.heads, "num_layers": config.layers, "hidden_scale": config.mlp_ratio,
          "n_q": 4, "card": 2048, "dropout": 0.0, "activation": "gelu", "norm_first": True, "bias_ff": False,
          "bias_attn": False, "bias_proj": False, "past_context": None, "causal": False, "custom": False,
          "memory_efficient": True, "attention_as_float32": False, "layer_scale": None, "positional_embedding": "sin",
          "xpos": False, "checkpointing": "none", "weight_init": "gaussian", "depthwise_init": "current",
          "zero_bias_init": True, "norm": "layer_norm", "cross_attention": False, "qk_layer_norm": False,
          "qk_layer_norm_cross": False, "attention_dropout": None, "kv_repeat": 1, "skip_connections": False,
          "flow_dim": config.latent_dim, "chords_dim": config.chord_embed_dim, "drums_dim": config.drum_embed_dim}
    if melody:  # the chords-drums recipes have no melody_dim key at all
        lm["melody_dim"] = config.melody_embed_dim
    fuser = {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": [], "prepend": [],
             "cross": ["description"], "ignore": ["chords", "self_wav"] + (["melody"] if melody else []),
             "input_interpolate": []}
    return {"transformer_lm": lm, "conditioners": conditioners, "fuser": fuser, **dropout,
            "dataset": {"segment_duration": segment_seconds}, "compression_model_framerate": config.frame_rate,
            "compression_model_latent_dim": config.drum_dim, "compression_model_latent_mean": latent_mean,
            "compression_model_latent_std": latent_std, "sample_rate": sample_rate}


def write_release(out_dir: str | Path, config: ModelConfig, weights: Mapping[str, torch.Tensor],
                  codec_weights: Mapping[str, torch.Tensor], xp: Mapping[str, Any]) -> Path:
    """Write ``state_dict.bin`` and ``compression_state_dict.bin`` in the released form; returns the folder."""
    from pipeline.atomic import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_weights(config, weights, "export")
    best_state = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    best_state.update({ENCODEC_PREFIX + k: v.detach().cpu().contiguous() for k, v in codec_weights.items()})
    state = {"best_state": best_state, "xp.cfg": yaml.safe_dump(dict(xp), sort_keys=False), "version": EXPORT_VERSION,
             "exported": True}
    pointer = {"pretrained": ENCODEC_POINTER, "exported": True, "version": EXPORT_VERSION}
    for name, payload in ((STATE_FILE, state), (COMPRESSION_FILE, pointer)):
        with atomic_path(out / name) as temp:
            torch.save(payload, temp)
    return out


def release_summary(release: JascoRelease) -> dict[str, Any]:
    """A few facts for people (sizes, variant) — for logs and ``report.json``."""
    config = release.model_config
    return {"source": str(release.source), "version": release.version,
            "variant": "chords-drums-melody" if config.melody_embed_dim else "chords-drums",
            "dim": config.dim, "layers": config.layers, "heads": config.heads,
            "parameters": sum(v.numel() for v in release.weights.values()),
            "config": dataclasses.asdict(config)}
