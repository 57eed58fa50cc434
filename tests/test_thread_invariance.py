"""Stage output does not depend on the process's thread count (pipeline/threads.py, pipeline/stage.py).

Every registered stage runs, in this one process, through its public entry points with the
process-wide BLAS/OpenMP/torch pools at 1 thread and then at 2: features, float32 intermediates
(salience, latents) and written stems must be byte-identical. The clips last seconds, so the
multithreaded paths (OpenBLAS sgemm of the mel filterbank, torch convolutions and FFTs) really split
their sums: unpinned, drums, melody and Demucs differ here by one float32 step or so.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from pipeline.audio import convert_channels, resample
from pipeline.stage import DEFAULT_NUMERIC_THREADS, FeatureExtractor, FeatureSpec, TrackContext, create_stage
from pipeline.threads import current_pin, pinned_threads
from stages.drums.synthetic import drum_loop_mix
from tests.test_melody_support import SHARED_WEIGHTS, synth_melody

#: The two process-wide thread counts compared (on one core the test passes without proving much).
COUNTS = (1, 2)
CLIP_RATE = 44100
#: Long enough for every multithreaded path to split its work (1.5 s clips do not, here).
CLIP_SECONDS = (4.0, 2.0)
NOTE_SECONDS = 0.4
#: Elements of the synthetic torch reduction (big enough for torch to use every thread).
REDUCTION_SIZE = 4_000_000


def set_process_threads(n: int) -> None:
    """Every BLAS/OpenMP pool and torch's intra-op threads to ``n`` (process-wide, until changed)."""
    threadpool_limits(limits=n)
    torch.set_num_threads(n)


@pytest.fixture
def process_threads() -> Iterator[Callable[[int], None]]:
    """:func:`set_process_threads`, with the counts of before the test restored afterwards."""
    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores every pool's count on exit
        yield set_process_threads
        torch.set_num_threads(before)


def clips() -> list[np.ndarray]:
    """Stereo drums + chords + a melody line, (2, N) float32 at CLIP_RATE."""
    out = []
    for seed, seconds in enumerate(CLIP_SECONDS):
        mix = drum_loop_mix(sr=CLIP_RATE, seconds=seconds, seed=seed).mix
        notes = [(60 + (7 * k + seed) % 17, NOTE_SECONDS) for k in range(int(seconds / NOTE_SECONDS) + 1)]
        melody = synth_melody(notes, sr=CLIP_RATE)[0][0][: len(mix)]
        mono = mix + 0.5 * np.pad(melody, (0, len(mix) - len(melody)))
        out.append(np.stack([mono, 0.8 * mono]).astype(np.float32))
    return out


def deliver(stage: FeatureExtractor, samples: np.ndarray) -> tuple[np.ndarray, int]:
    """What the loader would hand ``stage``: its channel count and sample rate."""
    converted = convert_channels(samples, stage.channels or samples.shape[0])
    rate = stage.sample_rate or CLIP_RATE
    return resample(converted, CLIP_RATE, rate), rate


def run_stage_entry_points(stage: FeatureExtractor, out_dir: Path) -> dict[str, Any]:
    """Every clip through ``process_many`` (and the stage's float32 intermediates), plus the bytes of
    every file the stage wrote under ``out_dir``."""
    items = [(*deliver(stage, clip), TrackContext(f"clip{i}", f"clip{i}.wav", str(out_dir)))
             for i, clip in enumerate(clips())]
    results = stage.process_many(items)
    values: dict[str, Any] = {}
    for (samples, sr, context), result in zip(items, results):
        assert not isinstance(result, Exception), result
        values.update({f"{context.track_id}/{key}": value for key, value in result.items()})
        values.update({f"{context.track_id}/{key}": value for key, value in intermediates(stage, samples, sr).items()})
    files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    values.update({f"file:{p.relative_to(out_dir)}": p.read_bytes() for p in files})
    return values


def intermediates(stage: FeatureExtractor, samples: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """float32 values that float16 storage could hide a difference in (public, pinned methods)."""
    if stage.name == "melody":
        return {"salience": stage.salience(samples, sr)}
    if stage.name == "latents":
        return {"encoded": stage.encode(samples[0])}
    if stage.name == "loudness":  # the streaming entry point, two chunks per clip
        half = samples.shape[1] // 2
        streamed = stage.extract_stream(iter([samples[:, :half], samples[:, half:]]), sr)
        return {f"stream_{key}": value for key, value in streamed.items()}
    return {}


def assert_identical(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    different = []
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, (np.ndarray, np.generic)):
            if not (x.dtype == y.dtype and np.array_equal(x, y)):
                gap = np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))) if x.dtype.kind == "f" else "-"
                different.append(f"{key} (max abs diff {gap})")
        elif x != y:
            different.append(key)
    assert not different, f"differ between {COUNTS[0]} and {COUNTS[1]} process threads: {different}"


def tiny_demucs_params(folder: Path) -> dict[str, Any]:
    """drums params for a small randomly initialised HTDemucs (the real class) saved in ``folder``."""
    from demucs.htdemucs import HTDemucs

    from stages.drums.demucs_weights import save_to_local_repo

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HTDemucs warns about zero-sized tensors at this size
        model = HTDemucs(sources=["drums", "bass", "other", "vocals"], samplerate=CLIP_RATE, segment=Fraction(4),
                         channels=16, depth=4, t_layers=1, t_heads=2)
    save_to_local_repo(model, folder, "0123abcd", bag="tiny")
    return {"separator": "demucs", "demucs": {"model": "tiny", "weights_dir": str(folder), "device": "cpu"}}


def stage_params(name: str, tmp_path: Path) -> dict[str, Any]:
    if name == "melody":
        if not (SHARED_WEIGHTS / "multif0.h5").is_file():
            pytest.skip(f"{SHARED_WEIGHTS} not available")
        return {"weights_dir": str(SHARED_WEIGHTS)}
    if name == "drums-demucs":
        return tiny_demucs_params(tmp_path / "demucs_repo")
    return {}  # drums: hpss; latents: the default codec (logspec_griffinlim)


@pytest.mark.parametrize("name", ["chords", "drums", "drums-demucs", "melody", "latents", "loudness"])
def test_stage_output_does_not_depend_on_the_process_thread_count(name, tmp_path, process_threads):
    stage = create_stage(name.split("-")[0], stage_params(name, tmp_path))
    runs = []
    for n in COUNTS:
        process_threads(n)
        stage.setup()
        runs.append(run_stage_entry_points(stage, tmp_path / f"threads{n}"))
    assert_identical(*runs)


# ----------------------------------------------------------------------------- the pin itself


def pool_counts() -> tuple[list[int], int]:
    return [pool["num_threads"] for pool in threadpool_info()], torch.get_num_threads()


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    threads: int = DEFAULT_NUMERIC_THREADS
    sample_rate: int = 8000
    channels: int = 1


class ProbeExtractor(FeatureExtractor):
    """Records the pools' counts inside each entry point and computes thread-dependent sums."""

    name = "probe"
    version = "1"
    config_class = ProbeConfig
    seen: list[tuple[list[int], int]] = []

    def features(self) -> tuple[FeatureSpec, ...]:
        return (FeatureSpec("torch_sum", "float32", ()), FeatureSpec("blas_product", "float32", (None, None)))

    def setup(self) -> None:
        self.seen.append(pool_counts())

    def extract(self, samples: np.ndarray, sr: int) -> dict[str, Any]:
        self.seen.append(pool_counts())
        return thread_dependent_sums()

    def extract_stream(self, chunks: Iterator[np.ndarray], sr: int) -> dict[str, Any]:
        self.seen.append(pool_counts())
        return self.extract(np.concatenate(list(chunks), axis=1), sr)


def thread_dependent_sums() -> dict[str, np.ndarray]:
    """A big torch reduction and a float32 BLAS product: both split their sums across threads."""
    values = torch.randn(REDUCTION_SIZE, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    left, right = rng.standard_normal((300, 5000), dtype=np.float32), rng.standard_normal((5000, 300), dtype=np.float32)
    return {"torch_sum": values.sum().numpy(), "blas_product": left @ right}


def test_the_pin_makes_thread_dependent_sums_identical(process_threads):
    stage = ProbeExtractor(ProbeConfig())
    unpinned, pinned = [], []
    for n in COUNTS:
        process_threads(n)
        unpinned.append(thread_dependent_sums())
        pinned.append(stage.extract(np.zeros((1, 8), np.float32), 8000))  # a direct call, as eval code makes
    assert_identical(*pinned)
    differs = [k for k in unpinned[0] if not np.array_equal(unpinned[0][k], unpinned[1][k])]
    print(f"unpinned, these differ between {COUNTS} threads on this machine: {differs}")


def test_every_entry_point_runs_at_the_stage_count_and_restores(process_threads, tmp_path):
    process_threads(2)
    before = pool_counts()
    stage = ProbeExtractor(ProbeConfig(threads=1))
    ProbeExtractor.seen = []
    stage.setup()
    stage.process_many([(np.zeros((1, 8), np.float32), 8000, TrackContext("t", "t.wav", str(tmp_path)))])
    stage.extract_stream(iter([np.zeros((1, 4), np.float32)] * 2), 8000)
    assert len(ProbeExtractor.seen) == 4
    assert all(counts == [1] * len(counts) and torch_count == 1 for counts, torch_count in ProbeExtractor.seen)
    assert pool_counts() == before and current_pin() is None


def test_nested_pins_switch_and_restore(process_threads):
    process_threads(2)
    before = pool_counts()
    with pinned_threads(1):
        assert pool_counts() == ([1] * len(before[0]), 1)
        with pinned_threads(2):
            assert pool_counts() == before and current_pin() == 2
        with pinned_threads(1):
            assert current_pin() == 1
        assert pool_counts() == ([1] * len(before[0]), 1)
    assert pool_counts() == before and current_pin() is None
    with pytest.raises(ValueError):
        with pinned_threads(0):
            pass


def test_threads_at_the_same_count_pin_together_and_the_last_restores(process_threads):
    process_threads(2)
    before = pool_counts()
    together = threading.Barrier(2, timeout=10)
    seen = []

    def worker() -> None:
        with pinned_threads(1):
            together.wait()  # both threads hold a pin at once
            seen.append(pool_counts())
            together.wait()  # neither leaves before both have looked

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert seen == [([1] * len(before[0]), 1)] * 2
    assert pool_counts() == before


@pytest.mark.parametrize("name", ["chords", "drums", "melody", "latents", "loudness"])
def test_numeric_threads_is_in_the_params_hash(name):
    stage = create_stage(name)
    if not hasattr(stage.config, "threads"):
        assert stage.numeric_threads == DEFAULT_NUMERIC_THREADS  # fixed: covered by the stage version
        return
    assert stage.numeric_threads == stage.config.threads
    assert create_stage(name, {"threads": stage.numeric_threads + 1}).params_hash != stage.params_hash
