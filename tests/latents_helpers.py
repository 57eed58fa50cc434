"""Test helpers for the latents stage: tiny random-init EnCodec checkpoints, synthetic chords."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.numba_cache import import_librosa

#: Shrunk versions of the real models' configurations (same classes, random weights).
TINY_HF_ENCODEC = dict(sampling_rate=32000, upsampling_ratios=[8, 5, 4, 4], num_filters=4, hidden_size=16,
                       codebook_dim=16, codebook_size=32, num_lstm_layers=1, target_bandwidths=[2.2],
                       use_causal_conv=False, use_conv_shortcut=False)
TINY_META_ARCHITECTURE = dict(n_filters=4, dimension=16, n_q=2, bins=16, lstm=1)

def save_tiny_jasco_state(file: Path, seed: int = 0) -> Path:
    """A JASCO-form ``state_dict.bin`` whose EnCodec copy is the tiny transformers EnCodec (no LM weights:
    the ``jasco_encodec`` codec reads only the copy)."""
    import torch
    from transformers import EncodecModel

    from stages.latents.encodec_jasco import ENCODEC_PREFIX

    folder = save_tiny_hf_encodec(file.parent / f"{file.stem}_hf", seed)
    state = EncodecModel.from_pretrained(folder).state_dict()
    file.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"best_state": {ENCODEC_PREFIX + k: v for k, v in state.items()}, "xp.cfg": "", "version": "test",
                "exported": True}, file)
    return file


def save_tiny_hf_encodec(folder: Path, seed: int = 0) -> Path:
    """``save_pretrained`` a shrunk transformers EncodecModel with random weights and codebooks."""
    import torch
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(seed)
    model = EncodecModel(EncodecConfig(**TINY_HF_ENCODEC))
    for layer in model.quantizer.layers:  # real checkpoints carry trained codebooks, not zeros
        layer.codebook.embed.copy_(_frames_as_codebook(model.encoder, layer.codebook.embed.shape[0]))
    model.save_pretrained(folder)
    return folder


def _frames_as_codebook(encoder, size: int):
    """Encoder outputs of noise as code vectors (what k-means initialisation does in training)."""
    import torch

    with torch.no_grad():
        frames = encoder(0.1 * torch.randn(1, 1, 48000))[0].T
    return frames[torch.randperm(frames.shape[0])[:size]]


def save_tiny_meta_encodec(path: Path, seed: int = 0) -> Path:
    """``torch.save`` the state dict of a shrunk ``encodec`` package model with random weights."""
    import torch

    from stages.latents.encodec_meta import EncodecArchitecture, build_model

    torch.manual_seed(seed)
    model = build_model(EncodecArchitecture(**TINY_META_ARCHITECTURE))
    for layer in model.quantizer.vq.layers:
        layer._codebook.embed.copy_(_frames_as_codebook(model.encoder, layer._codebook.embed.shape[0]))
        layer._codebook.inited.fill_(1.0)
    torch.save(model.state_dict(), path)
    return path


def top_pitch_classes(wav: np.ndarray, sample_rate: int, count: int = 3) -> set[int]:
    """The ``count`` strongest pitch classes of the mean chroma of ``wav``."""
    librosa = import_librosa()

    chroma = librosa.feature.chroma_stft(y=wav, sr=sample_rate, n_fft=8192, hop_length=2048, tuning=0.0)
    return set(np.argsort(chroma.mean(axis=1))[-count:].tolist())
