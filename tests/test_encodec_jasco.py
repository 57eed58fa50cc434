"""The ``jasco_encodec`` codec: EnCodec 32 kHz rebuilt from the copy inside a released JASCO
``state_dict.bin`` (../shared/reference/jasco_checkpoint fixtures), proven equal to the same model
saved by transformers, to AudioCraft's drum codes and to its decoded reference audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.threads import pinned_threads
from stages.latents.codec import CodecError
from stages.latents.codecs import CODECS, make_codec
from stages.latents.encodec_jasco import (
    ENCODEC_PREFIX,
    JascoEncodec,
    JascoEncodecConfig,
    encodec_from_jasco_state,
    infer_encodec_settings,
    load_jasco_state,
)
from tests.jasco_fixture import VARIANTS, Fixture, require_fixture

LATENT_MEAN, LATENT_STD = -0.0074, 4.0102
#: facebook/encodec_32khz's configuration (SPEC §1).
ENCODEC_32KHZ = dict(audio_channels=1, sampling_rate=32000, hidden_size=128, num_filters=64,
                     upsampling_ratios=[8, 5, 4, 4], codebook_size=2048, target_bandwidths=[2.2], num_lstm_layers=2,
                     norm_type="weight_norm", pad_mode="reflect", kernel_size=7, last_kernel_size=7,
                     residual_kernel_size=3, dilation_growth_rate=2, num_residual_layers=1, compress=2,
                     normalize=False, use_causal_conv=False, use_conv_shortcut=False)


@pytest.fixture(scope="module", params=VARIANTS)
def fixture(request) -> Fixture:
    return Fixture(require_fixture(request.param))


@pytest.fixture(scope="module")
def best_state(fixture) -> dict[str, torch.Tensor]:
    return load_jasco_state(fixture.folder)["best_state"]


@pytest.fixture(scope="module")
def codec(fixture) -> JascoEncodec:
    return make_codec("jasco_encodec", {"checkpoint": str(fixture.folder)})


def _encodec_part(best_state) -> dict[str, torch.Tensor]:
    return {k: v for k, v in best_state.items() if k.startswith(ENCODEC_PREFIX)}


def _old_spelling(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weight-norm keys as older transformers/torch wrote them (weight_g = original0, weight_v = original1)."""
    return {k.replace(".parametrizations.weight.original0", ".weight_g")
             .replace(".parametrizations.weight.original1", ".weight_v"): v for k, v in state.items()}


def _assert_same_weights(model, reference) -> None:
    ours, theirs = model.state_dict(), reference.state_dict()
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key


def test_model_from_state_dict_equals_the_saved_encodec(fixture, best_state):
    from transformers import EncodecModel

    reference = EncodecModel.from_pretrained(fixture.folder / "hf_encodec").eval()
    model = encodec_from_jasco_state(best_state, str(fixture.folder / "state_dict.bin"))
    assert len(_encodec_part(best_state)) == len(reference.state_dict()) == 116
    _assert_same_weights(model, reference)
    ours, theirs = model.config.to_dict(), reference.config.to_dict()
    for key in ENCODEC_32KHZ:
        assert ours[key] == theirs[key], key
    assert model.config.num_quantizers == reference.config.num_quantizers == len(model.quantizer.layers)


def test_both_weight_norm_spellings_load(best_state):
    new = encodec_from_jasco_state(best_state, "new.bin")
    old_state = _old_spelling(best_state)
    assert any(k.endswith(".weight_g") for k in old_state) and not any("parametrizations" in k for k in old_state)
    _assert_same_weights(encodec_from_jasco_state(old_state, "old.bin"), new)


def test_missing_and_unexpected_keys_are_named(best_state):
    missing_key = ENCODEC_PREFIX + "decoder.layers.15.conv.bias"
    state = {k: v for k, v in best_state.items() if k != missing_key}
    listed = r"lost\.bin.*missing keys: decoder\.layers\.15\.conv\.bias; unexpected keys: none"
    with pytest.raises(CodecError, match=listed):
        encodec_from_jasco_state(state, "lost.bin")
    state = {**best_state, ENCODEC_PREFIX + "decoder.extra.weight": torch.zeros(1)}
    with pytest.raises(CodecError, match=r"extra\.bin.*missing keys: none; unexpected keys: decoder\.extra\.weight"):
        encodec_from_jasco_state(state, "extra.bin")
    with pytest.raises(CodecError, match="no EnCodec weights"):
        encodec_from_jasco_state({"emb.weight": torch.zeros(1)}, "bare.bin")


def test_inference_recovers_the_real_32khz_config():
    """The published model's shapes (built on the meta device: no memory, no download) give its config back."""
    from transformers import EncodecConfig, EncodecModel

    with torch.device("meta"):
        model = EncodecModel(EncodecConfig(**ENCODEC_32KHZ))
    settings = infer_encodec_settings(model.state_dict(), "meta")
    assert len(model.state_dict()) == 116
    assert {k: settings[k] for k in ENCODEC_32KHZ} == ENCODEC_32KHZ
    assert EncodecConfig(**settings).num_quantizers == 4


def test_inference_follows_unusual_shapes():
    """Shapes unlike the 32 kHz model's (ratios, depths, shortcut, kernels, 3 codebooks) round-trip."""
    from transformers import EncodecConfig, EncodecModel

    odd = dict(ENCODEC_32KHZ, num_filters=4, hidden_size=16, codebook_dim=16, codebook_size=32,
               upsampling_ratios=[4, 2, 5], num_lstm_layers=1, num_residual_layers=2, compress=4, kernel_size=5,
               last_kernel_size=3, residual_kernel_size=5, use_conv_shortcut=True,
               target_bandwidths=[3 * 5 * 800 / 1000])  # 3 codebooks of 5 bits at 800 frames/s
    torch.manual_seed(0)
    reference = EncodecModel(EncodecConfig(**odd)).eval()
    assert reference.config.num_quantizers == 3
    state = {ENCODEC_PREFIX + k: v for k, v in reference.state_dict().items()}
    model = encodec_from_jasco_state(state, "odd.bin")
    _assert_same_weights(model, reference)
    assert {k: model.config.to_dict()[k] for k in odd if k != "target_bandwidths"} == \
        {k: v for k, v in odd.items() if k != "target_bandwidths"}


def test_drum_codes_equal_audiocraft(fixture, codec):
    """Bit-exact at one thread, as AudioCraft made them. (At 2 threads ~9 % of frames flip: the random
    fixture codebook makes the nearest code a near-tie, squared-distance gaps ~1e-7, that the
    convolutions' summation order decides.)"""
    drums = fixture.ref["inputs/drums_wav"][0, 0]
    with pinned_threads(1):
        latents = codec.encode(drums)
        silence = codec.encode(np.zeros_like(drums))
    assert latents.shape == (500, 128)
    codes = codec.codes(latents)[0]
    expected = fixture.ref["inputs/drum_codes"][0].astype(np.int64)
    np.testing.assert_array_equal(codes, expected)
    np.testing.assert_array_equal(codec.codes(silence)[0], fixture.ref["inputs/silence_codes"][0].astype(np.int64))
    # coarse = the nearest codebook-0 vectors (JASCO's drum condition before blur and projection)
    embed = codec.codebook_layers()[0].codebook.embed.numpy()
    np.testing.assert_array_equal(codec.coarse(latents), embed[expected])
    assert codec.codes(latents, 4).shape == (4, 500)


def test_decoding_reference_latents_gives_the_reference_audio(fixture, codec):
    cases = fixture.cases()
    assert cases
    worst = 0.0
    for case in cases:
        z1, audio = fixture.ref[f"{case}/z1"], fixture.ref[f"{case}/audio"]
        for row in range(z1.shape[0]):
            wav = codec.decode(z1[row] * LATENT_STD + LATENT_MEAN)
            assert wav.shape == (audio.shape[-1],)
            worst = max(worst, float(np.abs(wav - audio[row, 0]).max()))
    assert worst <= 1e-4, worst


def test_codec_through_the_registry(fixture, codec):
    assert CODECS["jasco_encodec"] == "stages.latents.encodec_jasco:JascoEncodec"
    assert isinstance(codec, JascoEncodec)
    assert codec.describe() == {"codec": "jasco_encodec", "sample_rate": 32000, "hop_length": 640,
                                "frame_rate": 50.0, "dim": 128, "coarse_dim": 128}
    from_file = make_codec("jasco_encodec", JascoEncodecConfig(checkpoint=str(fixture.folder / "state_dict.bin")))
    _assert_same_weights(from_file.model, codec.model)
    with pytest.raises(CodecError, match="coarse_codebooks must be in 1..4"):
        make_codec("jasco_encodec", {"checkpoint": str(fixture.folder), "coarse_codebooks": 5})


def test_latents_stage_extracts_with_the_jasco_codec(fixture, codec):
    from stages.latents import LatentsExtractor

    wav = fixture.ref["inputs/drums_wav"][0, 0, : 32000 * 2]
    stage = LatentsExtractor.from_params({"codec": "jasco_encodec", "chunk_seconds": 0,
                                          "jasco_encodec": {"checkpoint": str(fixture.folder)}})
    with pinned_threads(1):
        latents = stage.extract(wav[None], 32000)["latents"]
        direct = codec.encode(wav)
    assert latents.dtype == np.float16 and latents.shape == (100, 128)
    np.testing.assert_array_equal(latents, direct.astype(np.float16))


def test_params_yaml_names_the_codec_with_no_checkpoint():
    from pipeline.config import load_section
    from stages.latents.config import LatentsConfig

    config = load_section(LatentsConfig, "latents")
    assert config.jasco_encodec == JascoEncodecConfig(checkpoint=None, coarse_codebooks=1)


def test_clear_errors_for_what_is_not_a_release(tmp_path):
    with pytest.raises(CodecError, match="set latents.jasco_encodec.checkpoint to a JASCO checkpoint folder"):
        make_codec("jasco_encodec", {})
    with pytest.raises(CodecError, match="state_dict.bin does not exist.*facebook/jasco-chords-drums-400M"):
        load_jasco_state(tmp_path)
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "plain.bin")
    with pytest.raises(CodecError, match="not in the released form"):
        load_jasco_state(tmp_path / "plain.bin")
    (tmp_path / "junk.bin").write_bytes(b"not a torch file")
    with pytest.raises(CodecError, match="not a released JASCO state_dict.bin"):
        load_jasco_state(tmp_path / "junk.bin")


def test_solver_checkpoint_is_refused(fixture):
    solver = fixture.folder / "solver_checkpoint.th"
    if not solver.is_file():
        pytest.skip("no solver checkpoint in the fixture")
    with pytest.raises(CodecError, match="not a released JASCO state_dict.bin"):
        load_jasco_state(solver)
