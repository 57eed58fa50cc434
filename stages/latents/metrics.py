"""Round-trip distances between an original and a decoded signal (both mono, same rate).

* multi-resolution STFT distance: mean over FFT sizes of spectral convergence + log-magnitude L1
  (the usual vocoder loss, lower is better);
* log-mel L1: mean |log mel(orig) - log mel(decoded)| over 80 mel bands (natural log);
* SI-SDR (dB): only meaningful for codecs that keep phase (EnCodec); spectral codecs re-estimate
  phase, so their waveforms do not align sample by sample.
"""

from __future__ import annotations

import numpy as np
import torch

from stages.latents.constants import LOG_FLOOR

#: (n_fft, hop) of the multi-resolution STFT distance.
MRSTFT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (2048, 512))
LOGMEL_N_FFT = 1024
LOGMEL_HOP = 256
LOGMEL_BANDS = 80


def align(original: np.ndarray, decoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trim both to the shorter length (codecs may pad to whole frames)."""
    n = min(len(original), len(decoded))
    return original[:n].astype(np.float32), decoded[:n].astype(np.float32)


def _magnitude(wav: np.ndarray, n_fft: int, hop: int) -> torch.Tensor:
    return torch.stft(torch.from_numpy(wav), n_fft, hop, window=torch.hann_window(n_fft),
                      return_complex=True).abs()


def multi_resolution_stft(original: np.ndarray, decoded: np.ndarray) -> float:
    original, decoded = align(original, decoded)
    total = 0.0
    for n_fft, hop in MRSTFT_RESOLUTIONS:
        ref, est = _magnitude(original, n_fft, hop), _magnitude(decoded, n_fft, hop)
        convergence = torch.linalg.norm(ref - est) / torch.clamp(torch.linalg.norm(ref), min=LOG_FLOOR)
        log_l1 = torch.mean(torch.abs(torch.log(ref.clamp(min=LOG_FLOOR)) - torch.log(est.clamp(min=LOG_FLOOR))))
        total += float(convergence + log_l1)
    return total / len(MRSTFT_RESOLUTIONS)


def log_mel(wav: np.ndarray, sample_rate: int) -> torch.Tensor:
    """(N,) -> (80, T) natural-log mel magnitude."""
    from pipeline.numba_cache import import_librosa

    mel = import_librosa().filters.mel

    bank = torch.from_numpy(mel(sr=sample_rate, n_fft=LOGMEL_N_FFT, n_mels=LOGMEL_BANDS).astype(np.float32))
    return torch.log(torch.clamp(bank @ _magnitude(wav, LOGMEL_N_FFT, LOGMEL_HOP), min=LOG_FLOOR))


def log_mel_l1(original: np.ndarray, decoded: np.ndarray, sample_rate: int) -> float:
    original, decoded = align(original, decoded)
    return float(torch.mean(torch.abs(log_mel(original, sample_rate) - log_mel(decoded, sample_rate))))


def si_sdr(original: np.ndarray, decoded: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB."""
    original, decoded = align(original, decoded)
    ref = original.astype(np.float64) - original.mean()
    est = decoded.astype(np.float64) - decoded.mean()
    target = (np.dot(est, ref) / max(np.dot(ref, ref), 1e-12)) * ref
    noise = est - target
    return float(10.0 * np.log10(max(np.dot(target, target), 1e-12) / max(np.dot(noise, noise), 1e-12)))
