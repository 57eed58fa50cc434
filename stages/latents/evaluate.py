"""``chordflow latents eval``: round-trip quality and harmony preservation of codecs on real clips.

For each clip of a manifest that has a truth file (``TRUTH_DIR/<audio stem>.json``), the mono
audio at the codec's rate is encoded and decoded, then compared with the original
(:mod:`stages.latents.metrics`). Harmony preservation is Chordino's major/minor accuracy against
the truth chords (the chords stage's own extraction and mir_eval scoring) on the decoded audio,
divided by the same accuracy on the original audio: 1.0 means the codec loses no harmony.
Melody preservation is the same ratio for the melody stage's pitch (raw pitch and raw chroma
accuracy against the truth melody, :mod:`stages.latents.melody_judge`); it is skipped, with the
reason in the metrics, when the DeepSalience weights are missing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from stages.latents.codec import Codec
from stages.latents.constants import CHORDINO_RATE
from stages.latents.melody_judge import MelodyJudge, MelodyScore, melody_summary, truth_melody
from stages.latents.metrics import log_mel_l1, multi_resolution_stft, si_sdr

if TYPE_CHECKING:
    from pipeline.executors import Executor

#: mir_eval chord metric used for harmony preservation.
HARMONY_METRIC = "majmin"


@dataclasses.dataclass(frozen=True)
class Clip:
    track_id: str
    path: str
    truth_path: Path


def select_clips(manifest_path: str | Path, truth_dir: str | Path, limit: int | None = None) -> list[Clip]:
    """Manifest tracks (sorted by track id) that have a truth file, at most ``limit`` of them."""
    from pipeline.manifest import read_manifest

    table = read_manifest(manifest_path)
    clips = []
    for track_id, path in sorted(zip(table.column("track_id").to_pylist(), table.column("path").to_pylist())):
        truth_path = Path(truth_dir) / f"{Path(path).stem}.json"
        if truth_path.is_file():
            clips.append(Clip(track_id, path, truth_path))
    if not clips:
        raise ValueError(f"{manifest_path}: no track has a truth file in {truth_dir}")
    return clips[:limit] if limit else clips


class HarmonyJudge:
    """Chordino (through the chords stage) scored against truth chords: major/minor accuracy."""

    def __init__(self) -> None:
        from stages.chords import ChordsExtractor

        self.chords = ChordsExtractor.from_params({"sample_rate": CHORDINO_RATE})
        self.chords.setup()

    def parts(self, wav: np.ndarray, sample_rate: int, truth_chords: list) -> tuple[np.ndarray, np.ndarray]:
        """(comparisons, durations) of the mono ``wav`` against the truth (pool with :func:`pooled`)."""
        from stages.chords.evaluate import score_track

        segments = self.chords.segments(wav[None, :], sample_rate)
        return score_track(truth_chords, segments)[HARMONY_METRIC]


def pooled(parts: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    from stages.chords.evaluate import weighted

    return weighted(list(parts))


@dataclasses.dataclass
class Judges:
    """What :func:`evaluate_codec` measures besides distances."""

    harmony: HarmonyJudge | None = None
    melody: MelodyJudge | None = None
    #: Why melody preservation is not measured (missing weights, no truth melody); None if it is.
    melody_skipped: str | None = None
    #: The originals' scores by track id, cached across codecs: the originals are judged once.
    original_chords: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)
    original_melody: dict[str, MelodyScore] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class JudgeSettings:
    """Which judges :func:`evaluate_codec` runs: Chordino harmony, and the melody stage with the
    ``melody`` params section given as JSON (a key this process's judges are cached under)."""

    harmony: bool = True
    melody: bool = True
    melody_params_json: str = "null"

    @classmethod
    def of(cls, harmony: bool, melody: bool, melody_params: Mapping[str, Any] | None) -> "JudgeSettings":
        return cls(harmony, melody, json.dumps(melody_params, sort_keys=True))


#: This process's judges, built once per settings (an executor worker keeps them).
_JUDGES: dict[JudgeSettings, Judges] = {}


def judges_for(settings: JudgeSettings) -> Judges:
    """This process's :class:`Judges` for ``settings``, set up on first use."""
    from stages.latents.melody_judge import load_melody_judge

    if settings not in _JUDGES:
        judges = Judges(harmony=HarmonyJudge() if settings.harmony else None)
        if settings.melody:
            judges.melody, judges.melody_skipped = load_melody_judge(json.loads(settings.melody_params_json))
        _JUDGES[settings] = judges
    return _JUDGES[settings]


def load_mono(path: str, sample_rate: int) -> np.ndarray:
    from pipeline.audio import load_audio

    samples, _ = load_audio(path, sample_rate=sample_rate, channels=1)
    return samples[0]


@dataclasses.dataclass
class ClipMeasures:
    """One clip through one codec: distances, timings, and the judges' scores (None: not judged)."""

    row: dict[str, float]
    encode_s: float
    decode_s: float
    audio_s: float
    original_chords: tuple[np.ndarray, np.ndarray] | None = None
    decoded_chords: tuple[np.ndarray, np.ndarray] | None = None
    original_melody: MelodyScore | None = None
    decoded_melody: MelodyScore | None = None


def measure_clip(clip: Clip, codec: Codec, settings: JudgeSettings) -> ClipMeasures:
    """Encode, decode and judge one clip (runs in an executor worker). The codec runs at one numeric
    thread, as in the latents stage, so every executor gives the same figures."""
    from pipeline.threads import pinned_threads

    judges = judges_for(settings)
    wav = load_mono(clip.path, codec.sample_rate)
    with pinned_threads(1):
        started = time.perf_counter()
        latents = codec.encode(wav)
        encode_s = time.perf_counter() - started
        started = time.perf_counter()
        decoded = codec.decode(latents)
        decode_s = time.perf_counter() - started
        row = {"mrstft": multi_resolution_stft(wav, decoded), "logmel_l1": log_mel_l1(wav, decoded, codec.sample_rate)}
        if codec.phase_preserving:
            row["si_sdr_db"] = si_sdr(wav, decoded)
    measures = ClipMeasures(row, encode_s, decode_s, len(wav) / codec.sample_rate)
    if judges.harmony is not None:
        truth = json.loads(clip.truth_path.read_text(encoding="utf-8"))["chords"]
        if clip.track_id not in judges.original_chords:
            judges.original_chords[clip.track_id] = judges.harmony.parts(
                load_mono(clip.path, CHORDINO_RATE), CHORDINO_RATE, truth)
        measures.original_chords = judges.original_chords[clip.track_id]
        measures.decoded_chords = judges.harmony.parts(decoded, codec.sample_rate, truth)
    melody_truth = truth_melody(clip.truth_path) if judges.melody is not None else None
    if melody_truth is not None:
        if clip.track_id not in judges.original_melody:
            rate = judges.melody.stage.sample_rate
            judges.original_melody[clip.track_id] = judges.melody.score(load_mono(clip.path, rate), rate, melody_truth)
        measures.original_melody = judges.original_melody[clip.track_id]
        measures.decoded_melody = judges.melody.score(decoded, codec.sample_rate, melody_truth)
    return measures


def evaluate_codec(codec: Codec, clips: list[Clip], settings: JudgeSettings = JudgeSettings(),
                   progress: bool = True, executor: Executor | None = None) -> dict[str, Any]:
    """Metrics of one codec over ``clips``, run on ``executor`` (None: here; a worker gets the codec
    pickled with each clip); ``settings`` says which preservation judges run."""
    from pipeline.executors import SerialExecutor, run_all

    judges = judges_for(settings)  # here too: a missing judge is said once, before any worker starts
    futures = run_all(executor or SerialExecutor(), measure_clip, [(clip, codec, settings) for clip in clips],
                      codec.name, progress)
    measured = [future.result() for future in futures]  # clip order: the same sums on every executor
    rows = [m.row for m in measured]
    result: dict[str, Any] = {name: float(np.mean([r[name] for r in rows])) for name in rows[0]}
    if judges.harmony is not None:
        original = pooled(m.original_chords for m in measured)
        decoded_acc = pooled(m.decoded_chords for m in measured)
        result["chord_accuracy_original"] = original
        result["chord_accuracy_decoded"] = decoded_acc
        result["harmony_preservation"] = decoded_acc / original if original > 0 else math.nan
    decoded_melody = [m.decoded_melody for m in measured if m.decoded_melody is not None]
    if decoded_melody:
        result.update(melody_summary([m.original_melody for m in measured if m.original_melody is not None],
                                     decoded_melody))
    elif judges.melody is not None:
        result["melody_skipped"] = "no clip's truth file has a voiced melody"
    elif judges.melody_skipped:
        result["melody_skipped"] = judges.melody_skipped
    audio_s = sum(m.audio_s for m in measured)
    result["encode_rtf"] = sum(m.encode_s for m in measured) / audio_s
    result["decode_rtf"] = sum(m.decode_s for m in measured) / audio_s
    result["clips"] = len(rows)
    result["audio_seconds"] = round(audio_s, 3)
    result.update({k: v for k, v in codec.describe().items() if k != "codec"})
    return result


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of :func:`evaluate_codec` results keyed by codec name."""
    columns = ("mrstft", "logmel_l1", "si_sdr_db", "chord_accuracy_original", "chord_accuracy_decoded",
               "harmony_preservation", "melody_pitch_preservation", "melody_chroma_preservation",
               "encode_rtf", "decode_rtf", "dim", "frame_rate")
    lines = ["| codec | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, result in results.items():
        if "error" in result:
            lines.append(f"| {name} | unavailable: {result['error']} |")
            continue
        cells = [f"{result[c]:.3f}" if isinstance(result.get(c), float) else str(result.get(c, "—")) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    skipped = {r["melody_skipped"] for r in results.values() if "melody_skipped" in r}
    lines += [f"\nmelody preservation not measured: {reason}" for reason in sorted(skipped)]
    return "\n".join(lines)


