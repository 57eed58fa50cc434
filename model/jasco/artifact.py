"""A released JASCO model as a chordflow run artifact, and a chordflow ``jasco`` run as a release.

:func:`release_artifact` turns a release folder into the :class:`~model.artifact.RunArtifact` the
sampler and the trainer read: JASCO's network config and weights, the EnCodec copy inside
``state_dict.bin`` as the codec (``jasco_encodec``), JASCO's chord vocabulary (or the user's map),
its global latent normalisation, T5 from a local folder and JASCO's generation defaults
(:data:`JASCO_GENERATE`). :func:`export_run` writes any ``jasco``-architecture artifact back in the
released form.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from model.artifact import CodecSpec, Provenance, RunArtifact, VocabularySpec
from model.config import GenerateConfig, TextConfig
from model.jasco.release import (JascoRelease, ReleaseError, export_config, read_release, state_file,
                                 write_release)
from stages.chords.vocab import Vocabulary
from stages.latents.stats import NormalisationStats

#: Environment variable naming a local T5-base folder, for releases loaded without ``t5=``.
T5_ENV = "CHORDFLOW_T5"
T5_HUB_ID = "t5-base"
#: The codec registered for "EnCodec from a JASCO state dict" (stages/latents/encodec_jasco.py).
JASCO_CODEC = "jasco_encodec"
#: AudioCraft's API defaults: dopri5 to t = 1 - 1e-5 at tolerance 1e-5, cfg 5.0 / 0.0 over the whole
#: path, 10-s segments, Euler (if chosen) with 100 steps, Demucs on the drums, quirks on.
JASCO_GENERATE = GenerateConfig(
    cfg_coef_all=5.0, cfg_coef_txt=0.0, guidance_interval=(0.0, 1.0), solver="dopri5", steps=100,
    atol=1e-5, rtol=1e-5, adaptive_end_time=1.0 - 1e-5, audiocraft_quirks=True, separate_drums=True)


def release_vocabulary(chord_map: str | None) -> Vocabulary:
    """JASCO's vocabulary (shipped), or a user's ``.json`` / ``.pkl`` label -> index map."""
    return Vocabulary.jasco() if chord_map is None else Vocabulary.load(str(chord_map))


def t5_source(t5: str | None) -> str:
    """The T5 folder to use: the argument, else $CHORDFLOW_T5, else the hub id (needs network)."""
    source = t5 or os.environ.get(T5_ENV) or T5_HUB_ID
    if source != T5_HUB_ID and not Path(source).is_dir():
        raise ReleaseError(f"T5 folder {source} does not exist: JASCO's text encoder is T5-base "
                           f"(`huggingface-cli download {T5_HUB_ID} --local-dir DIR` where there is network), "
                           f"given as t5=DIR, --t5 DIR or ${T5_ENV}")
    return source


def release_stats(release: JascoRelease, codec: str = JASCO_CODEC) -> NormalisationStats:
    """JASCO's global latent normalisation as chordflow's stats (per-dimension entries: the same scalars)."""
    dim = release.model_config.latent_dim
    return NormalisationStats(column="latents", codec=codec, params_hash="jasco-release", frame_rate=release.model_config.frame_rate,
                              tracks=0, frames=0, mean=release.latent_mean, std=release.latent_std,
                              dim_mean=(release.latent_mean,) * dim, dim_std=(release.latent_std,) * dim)


def artifact_of_release(release: JascoRelease, t5: str | None = None, chord_map: str | None = None) -> RunArtifact:
    """The run artifact of an already read release."""
    vocabulary = release_vocabulary(chord_map)
    config = release.model_config
    if len(vocabulary) != config.chord_vocab_size:
        raise ReleaseError(f"chord map {chord_map or 'jasco'}: {len(vocabulary)} labels, but {release.source} was "
                           f"trained with {config.chord_vocab_size}")
    source = t5_source(t5)
    seconds = release.segment_seconds
    generate = GenerateConfig(**{**JASCO_GENERATE.__dict__, "seconds": seconds, "window_seconds": seconds})
    return RunArtifact(
        model_config=config,
        codec=CodecSpec(name=JASCO_CODEC, options={"checkpoint": str(release.source), "coarse_codebooks": 1}),
        vocabulary=VocabularySpec.of(vocabulary), stats=release_stats(release), normalisation="global",
        text=TextConfig(encoder="t5", name_or_path=source, max_tokens=0), generate=generate,
        model_weights=release.weights, ema_weights=None,
        provenance=Provenance(steps=0, text_source=source, torch_version=str(torch.__version__)))


def release_artifact(folder: str | Path, t5: str | None = None, chord_map: str | None = None) -> RunArtifact:
    """Read a release folder (or its ``state_dict.bin``) into a run artifact."""
    return artifact_of_release(read_release(folder), t5=t5, chord_map=chord_map)


def codec_weights_of(artifact: RunArtifact) -> dict[str, torch.Tensor]:
    """The EnCodec weights of an artifact's codec (a JASCO state dict's copy, or an HF EnCodec model)."""
    codec = artifact.codec.build()
    model = getattr(codec, "model", None)
    if model is None or type(model).__name__ != "EncodecModel":
        raise ReleaseError(f"codec {artifact.codec.name!r} is not a transformers EnCodec model; a JASCO release "
                           f"carries EnCodec 32 kHz (train on latents made with codec {JASCO_CODEC} or encodec_32khz)")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def export_run(artifact: RunArtifact, out_dir: str | Path, use_ema: bool = True) -> Path:
    """Write a ``jasco``-architecture artifact as ``state_dict.bin`` + ``compression_state_dict.bin``."""
    config = artifact.model_config
    if artifact.normalisation != "global":
        raise ReleaseError("JASCO normalises latents with one global mean and std; this run used "
                           f"{artifact.normalisation!r} (train with train.normalisation: global)")
    codec = artifact.codec.build()
    xp = export_config(config, latent_mean=artifact.stats.mean, latent_std=artifact.stats.std,
                       segment_seconds=artifact.generate.window_seconds, sample_rate=int(codec.sample_rate))
    return write_release(out_dir, config, artifact.weights(use_ema), codec_weights_of(artifact), xp)


__all__ = ["release_artifact", "artifact_of_release", "export_run", "state_file", "JASCO_GENERATE"]
