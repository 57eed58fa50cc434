"""DeepSalience weights and backends: loading, parity with the original Keras model, errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from stages.melody.backends import load_salience_model
from stages.melody.constants import (
    MACS_PER_AUDIO_SECOND,
    MODEL_NAMES,
    ORIGINAL_REPOSITORY,
    TIME_RECEPTIVE_RADIUS,
    WEIGHT_SHA256,
    WEIGHTS_ENV,
)
from stages.melody.fetch import sha256_of
from stages.melody.model_torch import DeepSalienceNet, fft_length, same_padding
from stages.melody.weights import WeightsError, read_weights, weight_path
from tests.test_melody_support import parity_fixture, weights_dir  # noqa: F401 (fixtures)

PARITY_TOLERANCE = 1e-4
INPUTS = ("sine", "sine_plus_drone")


def test_network_facts():
    # 12.6 GMAC per audio second, receptive radius 7 frames in time, TF's `same` split for even kernels
    assert MACS_PER_AUDIO_SECOND == pytest.approx(12.566e9, rel=1e-3)
    assert TIME_RECEPTIVE_RADIUS == 7
    assert same_padding(70) == (34, 35) and same_padding(5) == (2, 2) and same_padding(1) == (0, 0)
    assert fft_length(360, 70) >= 360 + 35


def test_weight_files_match_published_checksums(weights_dir):
    listed = dict(line.split()[::-1] for line in (weights_dir / "SHA256SUMS").read_text().splitlines() if line)
    assert {f"{m}.h5": h for m, h in WEIGHT_SHA256.items()} == listed
    assert sha256_of(weights_dir / "multif0.h5") == WEIGHT_SHA256["multif0"]


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_read_weights_every_model(weights_dir, model):
    weights = read_weights(model, weights_dir)
    assert weights.n_parameters == 406_921
    assert [c.kernel.shape for c in weights.convs] == [
        (5, 5, 6, 128), (5, 5, 128, 64), (3, 3, 64, 64), (3, 3, 64, 64), (70, 3, 64, 8), (1, 1, 8, 1)]


def test_torch_port_holds_the_file_arrays(weights_dir):
    weights = read_weights("melody2", weights_dir)
    net = DeepSalienceNet().load_keras_weights(weights)
    for conv, arrays in zip(net.convs, weights.convs):
        np.testing.assert_array_equal(conv.weight.detach().numpy(), arrays.kernel.transpose(3, 2, 0, 1))
        np.testing.assert_array_equal(conv.bias.detach().numpy(), arrays.bias)
    for norm, arrays in zip(net.norms, weights.batch_norms):
        np.testing.assert_array_equal(norm.running_var.numpy(), arrays.moving_variance)
        assert norm.eps == 1e-3


def test_keras_model_holds_the_file_arrays(weights_dir):
    model = load_salience_model("bass", "keras", weights_dir, threads=2)
    weights = read_weights("bass", weights_dir)
    expected = []
    for bn, conv in zip(weights.batch_norms, weights.convs):
        expected += [bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance, conv.kernel, conv.bias]
    got = model.model.get_weights()
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def _parity(backend: str, model: str, weights_dir, fixture) -> list[float]:
    salience_model = load_salience_model(model, backend, weights_dir, threads=2)
    batch = np.stack([fixture[f"hcqt_{name}"] for name in INPUTS])
    output = salience_model.predict(batch)
    return [float(np.abs(output[i] - fixture[f"keras_{model}_{name}"]).max()) for i, name in enumerate(INPUTS)]


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_torch_parity_with_keras_reference(weights_dir, parity_fixture, model):
    diffs = _parity("torch", model, weights_dir, parity_fixture)
    print(f"torch {model}: max abs diff {max(diffs):.2e}")
    assert max(diffs) <= PARITY_TOLERANCE


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_keras_parity_with_keras_reference(weights_dir, parity_fixture, model):
    diffs = _parity("keras", model, weights_dir, parity_fixture)
    print(f"keras {model}: max abs diff {max(diffs):.2e}")
    assert max(diffs) <= PARITY_TOLERANCE


def test_bfloat16_keeps_the_melody_condition_of_float32(weights_dir, parity_fixture):
    # The faster precision changes the salience by ~1e-2 at most, and the JASCO condition (argmax
    # semitone above 0.5) on at least 99 % of frames; the float32 path stays the reference.
    from stages.melody.jasco import salience_to_semitones

    batch = np.stack([parity_fixture[f"hcqt_{name}"] for name in INPUTS])
    full = load_salience_model("multif0", "torch", weights_dir, threads=1).predict(batch)
    fast_model = load_salience_model("multif0", "torch", weights_dir, threads=1, precision="bfloat16")
    assert fast_model.net.low_precision_layers == 4
    assert {w.dtype for w, _ in fast_model.net._low_precision.values()} == {torch.bfloat16}
    fast = fast_model.predict(batch)
    assert fast.dtype == np.float32 and fast.shape == full.shape
    assert 0 < np.abs(fast - full).max() < 0.05
    for a, b in zip(full, fast):
        index_a, index_b = (np.where(s.max(axis=1) > 0, s.argmax(axis=1), -1)
                            for s in (salience_to_semitones(a), salience_to_semitones(b)))
        assert np.mean(index_a == index_b) >= 0.99
    with pytest.raises(ValueError, match="precision"):
        load_salience_model("multif0", "keras", weights_dir, threads=1, precision="bfloat16")
    with pytest.raises(ValueError, match="precision"):
        DeepSalienceNet().set_precision("float16")


def test_parity_check_detects_a_wrong_port(weights_dir, parity_fixture):
    # Padding the 70-tall kernel symmetrically (35/34 instead of TF's 34/35) must fail parity.
    weights = read_weights("multif0", weights_dir)
    net = DeepSalienceNet().load_keras_weights(weights)
    net.fft_convs["4"].top = 35
    with torch.inference_mode():
        out = net(torch.from_numpy(parity_fixture["hcqt_sine"][None].copy()))[0].numpy()
    assert np.abs(out - parity_fixture["keras_multif0_sine"]).max() > 10 * PARITY_TOLERANCE


def test_missing_weight_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(WeightsError) as info:
        load_salience_model("multif0", "torch", tmp_path)
    message = str(info.value)
    for needed in ("multif0.h5", str(tmp_path), "chordflow melody fetch-weights", ORIGINAL_REPOSITORY, WEIGHTS_ENV):
        assert needed in message


def test_weights_dir_from_environment(tmp_path, monkeypatch, weights_dir):
    monkeypatch.setenv(WEIGHTS_ENV, str(weights_dir))
    assert weight_path("vocal") == weights_dir / "vocal.h5"
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(WeightsError, match=str(tmp_path)):
        weight_path("vocal")


def test_corrupt_weight_file_is_a_clear_error(tmp_path, weights_dir):
    broken = tmp_path / "pitch.h5"
    broken.write_bytes((weights_dir / "pitch.h5").read_bytes()[:5000])
    with pytest.raises(WeightsError, match="pitch.h5"):
        read_weights("pitch", tmp_path)
    shutil.copy(weights_dir / "multif0.h5", tmp_path / "multif0.h5")
    assert read_weights("multif0", tmp_path).n_parameters == 406_921


def test_unknown_backend_and_model(weights_dir):
    with pytest.raises(ValueError, match="backend"):
        load_salience_model("multif0", "onnx", weights_dir)
    with pytest.raises(ValueError, match="unknown DeepSalience model"):
        load_salience_model("drums", "torch", weights_dir)
