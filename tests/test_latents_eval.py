"""``chordflow latents eval``: round-trip metrics, harmony preservation on a synthetic progression,
melody preservation (identity codec keeps it all, an octave shift keeps chroma but not pitch)."""

import argparse
import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from music.chords import label_pitch_classes
from pipeline.corpus.tones import chord_tone
from pipeline.manifest import build_manifest, write_manifest
from pipeline.numba_cache import import_librosa
from stages.latents.cli import add_cli
from stages.latents.codec import Codec
from stages.latents.evaluate import JudgeSettings, evaluate_codec, select_clips
from stages.latents.melody_judge import MelodyScore, pooled_melody
from stages.latents.metrics import log_mel_l1, multi_resolution_stft, si_sdr
from tests.test_melody_support import synth_melody, weights_dir, write_truth  # noqa: F401 (fixture)

PROGRESSION = [("C", 0.0, 3.0), ("Am", 3.0, 6.0), ("F", 6.0, 9.0), ("Em", 9.0, 12.0)]


def test_metrics_rank_distortions():
    rng = np.random.default_rng(0)
    clean = chord_tone(label_pitch_classes("C"), 1.0, 22050)
    slight = clean + 0.001 * rng.standard_normal(len(clean)).astype(np.float32)
    heavy = clean + 0.05 * rng.standard_normal(len(clean)).astype(np.float32)
    assert multi_resolution_stft(clean, clean) == pytest.approx(0.0, abs=1e-6)
    assert multi_resolution_stft(clean, slight) < multi_resolution_stft(clean, heavy)
    assert log_mel_l1(clean, slight, 22050) < log_mel_l1(clean, heavy, 22050)
    assert si_sdr(clean, 3.0 * clean) > 60.0  # scale-invariant
    assert si_sdr(clean, slight) > si_sdr(clean, heavy)


def test_eval_reports_harmony_preservation(tmp_path):
    audio, truth = tmp_path / "audio", tmp_path / "truth"
    audio.mkdir(), truth.mkdir()
    sr = 44100
    wav = np.concatenate([chord_tone(label_pitch_classes(c), end - start, sr, octave=4) + chord_tone(label_pitch_classes(c), end - start, sr, octave=3)
                          for c, start, end in PROGRESSION])
    sf.write(audio / "prog.wav", wav, sr)
    (truth / "prog.json").write_text(json.dumps({"chords": [{"label": c, "start": s, "end": e} for c, s, e in PROGRESSION]}))
    table, rejects = build_manifest([audio])
    write_manifest(table, rejects, tmp_path / "m.parquet")
    params = tmp_path / "params.yaml"
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    params.write_text(f"latents:\n  logspec_griffinlim: {{griffin_lim_iters: 32}}\nmelody: {{weights_dir: {no_weights}}}\n")
    out = tmp_path / "metrics.json"
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["latents", "eval", "--manifest", str(tmp_path / "m.parquet"), "--truth", str(truth),
                              "--codec", "logspec_griffinlim", "--codec", "encodec_32khz", "--params", str(params),
                              "--out", str(out), "--no-progress"])
    assert args.func(args) == 0
    result = json.loads(out.read_text())
    assert "cannot load checkpoint" in result["encodec_32khz"]["error"]  # no weights offline: reported, not fatal
    logspec = result["logspec_griffinlim"]
    assert logspec["clips"] == 1 and logspec["frame_rate"] == 50.0
    assert logspec["chord_accuracy_original"] > 0.8  # Chordino reads the synthetic progression
    assert logspec["harmony_preservation"] >= 0.85
    assert logspec["harmony_preservation"] == pytest.approx(
        logspec["chord_accuracy_decoded"] / logspec["chord_accuracy_original"])
    assert "si_sdr_db" not in logspec  # phase is re-estimated: SI-SDR would be meaningless
    # no DeepSalience weights: the melody measure is skipped with the reason, the chord measure still ran
    assert "weights missing" in logspec["melody_skipped"] and "multif0.h5" in logspec["melody_skipped"]
    assert "melody_pitch_preservation" not in logspec


@dataclasses.dataclass(frozen=True)
class NoOptions:
    pass


class FramesCodec(Codec):
    """Latents = the samples cut into frames; ``semitones`` shifts the decoded pitch (0 = identity)."""

    name = "frames"
    config_class = NoOptions
    phase_preserving = True
    sample_rate, hop_length, dim, coarse_dim = 22050, 441, 441, 1

    def __init__(self, semitones: int = 0) -> None:
        super().__init__(NoOptions())
        self.semitones = semitones

    def n_frames(self, n_samples: int) -> int:
        return -(-n_samples // self.hop_length)

    def encode(self, wav: np.ndarray) -> np.ndarray:
        wav = self._check_wav(wav)
        padded = np.pad(wav, (0, self.n_frames(len(wav)) * self.hop_length - len(wav)))
        return padded.reshape(-1, self.hop_length)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        wav = self._check_latents(latents).reshape(-1)
        if self.semitones:
            librosa = import_librosa()

            wav = librosa.effects.pitch_shift(wav, sr=self.sample_rate, n_steps=self.semitones)
        return wav.astype(np.float32)

    def coarse(self, latents: np.ndarray) -> np.ndarray:
        return np.abs(latents).mean(axis=1, keepdims=True)


def test_melody_scores_pool_by_voiced_frames():
    scores = [MelodyScore({"raw_pitch_accuracy": 1.0, "raw_chroma_accuracy": 1.0}, 300),
              MelodyScore({"raw_pitch_accuracy": 0.0, "raw_chroma_accuracy": 0.5}, 100)]
    assert pooled_melody(scores) == {"raw_pitch_accuracy": pytest.approx(0.75),
                                     "raw_chroma_accuracy": pytest.approx(0.875)}


def test_melody_preservation_is_decoded_over_original(tmp_path, weights_dir):  # noqa: F811
    audio, truth = tmp_path / "audio", tmp_path / "truth"
    audio.mkdir(), truth.mkdir()
    sr = FramesCodec.sample_rate
    tune, f0 = synth_melody([(60, 0.6), (64, 0.6), (67, 0.6), (62, 0.6)], sr=sr, gap=0.1)
    sf.write(audio / "tune.wav", tune[0], sr)
    write_truth(truth / "tune.json", f0)
    sf.write(audio / "chords_only.wav", chord_tone(label_pitch_classes("C"), 1.0, sr), sr)
    (truth / "chords_only.json").write_text(json.dumps({"chords": [{"label": "C", "start": 0.0, "end": 1.0}]}))
    table, rejects = build_manifest([audio])
    write_manifest(table, rejects, tmp_path / "m.parquet")
    clips = select_clips(tmp_path / "m.parquet", truth)
    judges = JudgeSettings.of(harmony=False, melody=True, melody_params={"weights_dir": str(weights_dir)})

    identity = evaluate_codec(FramesCodec(), clips, judges, progress=False)
    assert identity["clips"] == 2 and identity["melody_clips"] == 1  # the chords-only truth is not scored
    assert identity["melody_pitch_accuracy_original"] > 0.8  # the melody stage reads the synthetic tune
    assert identity["melody_pitch_preservation"] == 1.0 and identity["melody_chroma_preservation"] == 1.0

    from pipeline.executors import ProcessExecutor

    with ProcessExecutor(2) as executor:  # the same figures from a pool (the codec travels pickled)
        pooled = evaluate_codec(FramesCodec(), clips, judges, progress=False, executor=executor)
    timing = ("encode_rtf", "decode_rtf")
    assert {k: v for k, v in pooled.items() if k not in timing} == {k: v for k, v in identity.items() if k not in timing}

    octave_up = evaluate_codec(FramesCodec(semitones=12), clips, judges, progress=False)
    assert octave_up["melody_pitch_accuracy_original"] == identity["melody_pitch_accuracy_original"]
    assert octave_up["melody_pitch_preservation"] < 0.2  # every note is an octave off...
    assert octave_up["melody_chroma_preservation"] > 0.8  # ...but on the right pitch class
    assert octave_up["melody_pitch_preservation"] == pytest.approx(
        octave_up["melody_pitch_accuracy_decoded"] / octave_up["melody_pitch_accuracy_original"])
