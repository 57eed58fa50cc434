"""STFT helpers shared by the spectral codecs: magnitude, Griffin-Lim, frequency filterbanks."""

from __future__ import annotations

import numpy as np
import torch


def stft_magnitude(wav: np.ndarray, n_fft: int, hop: int) -> torch.Tensor:
    """(N,) float32 -> (n_fft//2+1, 1 + N//hop) magnitude of the centred, Hann-windowed STFT."""
    signal = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    if signal.shape[0] <= n_fft // 2:  # reflect padding needs more samples than half a window
        signal = torch.nn.functional.pad(signal, (0, n_fft // 2 + 1 - signal.shape[0]))
        frames = 1 + wav.shape[0] // hop
    else:
        frames = None
    spec = torch.stft(signal, n_fft, hop, window=torch.hann_window(n_fft), center=True,
                      pad_mode="reflect", return_complex=True).abs()
    return spec if frames is None else spec[:, :frames]


def griffin_lim(magnitude: torch.Tensor, n_fft: int, hop: int, n_iter: int, momentum: float,
                length: int) -> np.ndarray:
    """Phase from magnitude by fast Griffin-Lim (deterministic: zero initial phase).

    Args:
        magnitude: (n_fft//2+1, T) linear magnitude.
    Returns:
        (length,) float32.
    """
    import torchaudio.functional as AF

    wav = AF.griffinlim(magnitude[None], torch.hann_window(n_fft), n_fft, hop, n_fft, power=1.0,
                        n_iter=n_iter, momentum=momentum, length=length, rand_init=False)
    return wav[0].numpy().astype(np.float32)


def triangular_filterbank(centres_hz: np.ndarray, n_fft: int, sample_rate: int) -> np.ndarray:
    """(B, n_fft//2+1) triangles, band b rising from centre b-1 to b and falling to b+1.

    The triangles of neighbouring bands sum to 1 between the first and last centre (a partition
    of unity), so the transposed bank interpolates band values back onto STFT bins.
    """
    bins = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = np.concatenate([[centres_hz[0] - (centres_hz[1] - centres_hz[0])], centres_hz,
                            [centres_hz[-1] + (centres_hz[-1] - centres_hz[-2])]])
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None)


def pool_bands(latents: np.ndarray, group: int) -> np.ndarray:
    """(T, D) -> (T, ceil(D / group)) mean of consecutive channel groups (a low-resolution view)."""
    t, d = latents.shape
    padded = int(np.ceil(d / group)) * group
    if padded != d:  # repeat the last channel so the last group's mean is over real values
        latents = np.concatenate([latents, np.repeat(latents[:, -1:], padded - d, axis=1)], axis=1)
    return latents.reshape(t, padded // group, group).mean(axis=2).astype(np.float32)
