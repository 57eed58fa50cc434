"""Chunked inference: window planning, and chunked == whole on a real track."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import ConfigError, load_config
from stages.melody.backends import load_salience_model
from stages.melody.chunking import plan_windows, predict_salience
from stages.melody.config import MelodyConfig
from stages.melody.constants import SAMPLE_RATE, TIME_RECEPTIVE_RADIUS
from stages.melody.hcqt import compute_hcqt
from tests.test_melody_support import synth_melody, weights_dir  # noqa: F401 (fixture)


@pytest.mark.parametrize("n_frames", [1, 7, 114, 115, 116, 299, 300, 301, 1000, 2345])
@pytest.mark.parametrize("chunk", [1, 50, 100])
def test_windows_tile_the_track_with_enough_margin(n_frames, chunk):
    overlap = TIME_RECEPTIVE_RADIUS
    windows = plan_windows(n_frames, chunk, overlap)
    kept = np.concatenate([np.arange(w.keep_start, w.keep_stop) for w in windows])
    np.testing.assert_array_equal(kept, np.arange(n_frames))  # every frame exactly once, in order
    assert len({w.stop - w.start for w in windows}) == 1  # equal lengths: windows can be batched
    for w in windows:
        assert 0 <= w.start <= w.keep_start < w.keep_stop <= w.stop <= n_frames
        assert w.start == 0 or w.keep_start - w.start >= overlap
        assert w.stop == n_frames or w.stop - w.keep_stop >= overlap


def test_overlap_below_the_receptive_radius_is_rejected():
    with pytest.raises(ConfigError, match="receptive radius"):
        load_config(MelodyConfig, {"overlap_frames": TIME_RECEPTIVE_RADIUS - 1})


@pytest.fixture(scope="module")
def track_hcqt():
    # 7 s of a melody with gaps over faint noise: note edges of every kind fall inside windows
    melody, _ = synth_melody([(67, 0.9), (72, 0.5), (64, 1.2), (76, 0.7)] * 2, gap=0.1)
    rng = np.random.default_rng(0)
    audio = melody[0] + 0.01 * rng.standard_normal(melody.shape[1]).astype(np.float32)
    return compute_hcqt(audio, SAMPLE_RATE)


def test_chunked_equals_whole(weights_dir, track_hcqt):
    model = load_salience_model("multif0", "torch", weights_dir, threads=2)
    n_frames = track_hcqt.shape[-1]
    whole = model.predict(track_hcqt[None])[0]
    chunked = predict_salience(model, track_hcqt, chunk_frames=97, batch_size=4)
    diff = float(np.abs(chunked - whole).max())
    print(f"{n_frames} frames, 97-frame chunks with {TIME_RECEPTIVE_RADIUS}-frame overlap: max |chunked - whole| = {diff:.2e}")
    assert diff <= 1e-5

    # The test can fail: hard cuts (no overlap, like the original's 2000-frame chunks) differ.
    hard = np.concatenate([model.predict(track_hcqt[None, :, :, s:s + 97])[0] for s in range(0, n_frames, 97)], axis=1)
    hard_diff = float(np.abs(hard - whole).max())
    print(f"hard 97-frame cuts: max |chunked - whole| = {hard_diff:.3f}")
    assert hard_diff > 1e-2


def test_cropped_bins_equal_the_whole_map(weights_dir, track_hcqt):
    # Only the rows the kept bins can see go through the network; a smaller reach would not do.
    from stages.melody.constants import FREQUENCY_REACH_BELOW, JASCO_FIRST_GROUP_BIN, N_BINS

    assert FREQUENCY_REACH_BELOW == 40
    model = load_salience_model("multif0", "torch", weights_dir, threads=1)
    whole = predict_salience(model, track_hcqt, chunk_frames=200)
    cropped = predict_salience(model, track_hcqt, chunk_frames=200, lowest_bin=JASCO_FIRST_GROUP_BIN)
    assert np.abs(cropped[JASCO_FIRST_GROUP_BIN:] - whole[JASCO_FIRST_GROUP_BIN:]).max() <= 1e-5
    assert not cropped[:JASCO_FIRST_GROUP_BIN].any()
    assert model.predict(track_hcqt[None, :, :, :50], lowest_bin=300).shape == (1, N_BINS - 300, 50)
    # cutting the input 10 rows closer than the reach spoils the lowest kept bins
    first = JASCO_FIRST_GROUP_BIN - FREQUENCY_REACH_BELOW + 10
    spoiled = model.predict(np.pad(track_hcqt[None, :, first:, :200], ((0, 0), (0, 0), (first, 0), (0, 0))),
                            lowest_bin=JASCO_FIRST_GROUP_BIN)[0]
    assert np.abs(spoiled[:5] - whole[JASCO_FIRST_GROUP_BIN:JASCO_FIRST_GROUP_BIN + 5, :200]).max() > 1e-3
    with pytest.raises(ValueError, match="lowest_bin"):
        model.predict(track_hcqt[None], lowest_bin=N_BINS)
