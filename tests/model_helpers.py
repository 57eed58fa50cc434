"""A tiny, fully real feature set for model tests (no corpus render, no stage weights).

Each track is synthesised from a known chord progression (harmonic triads) and a known melody;
its audio is written to disk (so the manifest is real), encoded by a small ``logspec_griffinlim``
codec (the project's default backend, shrunk) and stored as stage shards exactly as the latents,
chords and melody stages store them. Chord and melody frames come from the same timelines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.arrays import coerce_value
from pipeline.audio import resample
from pipeline.manifest import build_manifest, write_manifest
from pipeline.stage import FeatureSpec
from pipeline.store import StageInfo, write_shard
from stages.chords.frames import timeline_to_frames
from stages.chords.vocab import Vocabulary
from stages.latents.codecs import make_codec
from stages.latents.stats import compute_stats

SAMPLE_RATE = 22050
FRAME_RATE = 50.0
#: A shrunk logspec codec: 50 fps, few bands, few Griffin-Lim iterations (tests only).
TINY_CODEC = {"sample_rate": SAMPLE_RATE, "hop_length": 441, "n_fft": 1024, "fmin": 60.0, "fmax": 8000.0,
              "bins_per_octave": 6, "griffin_lim_iters": 4, "griffin_lim_momentum": 0.99, "coarse_pool": 8}
PROGRESSIONS = [["C", "G", "Am", "F"], ["Am", "F", "C", "G"], ["F", "C", "G", "Em"], ["G", "Em", "C", "D"]]
PITCH_CLASSES = {"C": (0, 4, 7), "G": (7, 11, 2), "Am": (9, 0, 4), "F": (5, 9, 0), "Em": (4, 7, 11), "D": (2, 6, 9)}
SPLITS = ["train", "train", "train", "train", "valid", "test"]


@dataclass(frozen=True)
class TinyFeatures:
    root: Path
    manifest: Path
    metadata: Path
    latents: Path
    chords: Path
    melody: Path
    drums: Path
    stats: Path
    timelines: dict[str, list]


def _tone(freqs: list[float], seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * f * k * t) / k for f in freqs for k in (1, 2, 3))
    return (0.1 * wave * np.minimum(1, np.minimum(t, seconds - t) * 50)).astype(np.float32)


def track_audio(chords: list[str], seconds_per_chord: float, seed: int) -> tuple[np.ndarray, list, np.ndarray]:
    """(N,) audio, the chord timeline [(label, start)], and (T,) melody indices at 50 fps (-1 unvoiced)."""
    rng = np.random.default_rng(seed)
    parts, timeline, melody = [], [], []
    for i, label in enumerate(chords):
        root_midi = 48 + PITCH_CLASSES[label][0]
        freqs = [440 * 2 ** ((48 + pc - 69) / 12) for pc in PITCH_CLASSES[label]]
        note = int(rng.integers(0, 53))
        freqs.append(440 * 2 ** ((43 + note - 69) / 12))  # melody bin 0 = G2 (MIDI 43)
        parts.append(_tone(freqs, seconds_per_chord))
        timeline.append([label, i * seconds_per_chord])
        melody += [note] * int(seconds_per_chord * FRAME_RATE)
        del root_midi
    return np.concatenate(parts), timeline, np.array(melody, dtype=np.int16)


def build_tiny_features(root: Path, n_tracks: int = 6, seconds_per_chord: float = 1.0,
                        codec: tuple[str, dict] | None = None) -> TinyFeatures:
    """Write audio, manifest, metadata, stage shards and stats for ``n_tracks`` synthetic tracks
    (latents of ``codec`` = (name, options), by default a tiny log-spectrogram codec)."""
    root.mkdir(parents=True, exist_ok=True)
    audio_dir = root / "audio"
    audio_dir.mkdir(exist_ok=True)
    made = {}
    for i in range(n_tracks):
        chords = PROGRESSIONS[i % len(PROGRESSIONS)] * 2
        audio, timeline, melody = track_audio(chords, seconds_per_chord, seed=i)
        path = audio_dir / f"track_{i:02d}.wav"
        sf.write(path, audio, SAMPLE_RATE)
        made[path.name] = (audio, timeline, melody)
    table, rejects = build_manifest([audio_dir], workers=1)
    manifest = root / "manifest.parquet"
    write_manifest(table, rejects, manifest)
    ids, paths = table.column("track_id").to_pylist(), table.column("path").to_pylist()
    metadata = root / "metadata.jsonl"
    lines = []
    for number, path in enumerate(paths):
        lines.append(json.dumps({"path": path, "split": SPLITS[number % len(SPLITS)],
                                 "description": f"synthetic organ piece number {number}"}))
    metadata.write_text("\n".join(lines) + "\n")

    codec_name, codec_options = codec or ("logspec_griffinlim", TINY_CODEC)
    codec = make_codec(codec_name, codec_options)
    vocabulary = Vocabulary.jasco()
    rows = {"latents": [], "chords": [], "melody": [], "drums": []}
    timelines = {}
    for tid, path in zip(ids, paths):
        audio, timeline, melody = made[Path(path).name]
        if codec.sample_rate != SAMPLE_RATE:
            audio_for_codec = resample(audio[None].astype(np.float32), SAMPLE_RATE, codec.sample_rate)[0]
        else:
            audio_for_codec = audio
        latents = codec.encode(audio_for_codec)
        frames = latents.shape[0]
        timelines[tid] = timeline
        chord_index = timeline_to_frames(timeline, frames, vocabulary, FRAME_RATE)
        melody = np.pad(melody, (0, max(0, frames - len(melody))), constant_values=-1)[:frames]
        rows["latents"].append({"track_id": tid, "path": path, "latents": latents.astype(np.float16),
                                "drums_coarse": codec.coarse(latents).astype(np.float16)})
        rows["chords"].append({"track_id": tid, "path": path, "timeline": [
            {"label": label, "start": start, "end": start + seconds_per_chord} for label, start in timeline],
            "chord_index": chord_index, "unknown_frames": np.int32(0), "duration_s": len(audio) / SAMPLE_RATE})
        rows["melody"].append({"track_id": tid, "path": path, "melody_index": melody.astype(np.int16)})
        stem = root / "drums" / "stems" / f"{tid}.flac"
        stem.parent.mkdir(parents=True, exist_ok=True)
        sf.write(stem, 0.5 * audio * (np.arange(len(audio)) % 11025 < 800), SAMPLE_RATE)  # clicks every 0.5 s
        rows["drums"].append({"track_id": tid, "path": path, "stem_path": f"stems/{tid}.flac"})
    specs = {
        "latents": (FeatureSpec("latents", "float16", (None, codec.dim), FRAME_RATE),
                    FeatureSpec("drums_coarse", "float16", (None, codec.coarse_dim), FRAME_RATE)),
        "chords": (FeatureSpec("timeline", "json", ()), FeatureSpec("chord_index", "int16", (None,), FRAME_RATE),
                   FeatureSpec("unknown_frames", "int32", ()), FeatureSpec("duration_s", "float64", ())),
        "melody": (FeatureSpec("melody_index", "int16", (None,), FRAME_RATE),),
        "drums": (FeatureSpec("stem_path", "string", ()),),
    }
    params = {"latents": {"codec": codec_name, codec_name: codec_options},
              "chords": {"vocabulary": "jasco", "slash_fallback": True}, "melody": {}, "drums": {}}
    for stage, stage_rows in rows.items():
        info = StageInfo(stage=stage, version="1", params_hash=f"tiny-{stage}", features=specs[stage],
                         params=params[stage])
        coerced = [{k: (coerce_value(spec, v) if (spec := next((s for s in specs[stage] if s.name == k), None)) else v)
                    for k, v in row.items()} for row in stage_rows]
        write_shard(root / stage, 0, info, [r["track_id"] for r in stage_rows], coerced)
    stats = root / "stats.json"
    train_ids = [tid for tid, number in zip(ids, range(len(ids))) if SPLITS[number % len(SPLITS)] == "train"]
    compute_stats(root / "latents", track_ids=train_ids).save(stats)
    return TinyFeatures(root=root, manifest=manifest, metadata=metadata, latents=root / "latents",
                        chords=root / "chords", melody=root / "melody", drums=root / "drums", stats=stats,
                        timelines=timelines)


def paths_for(tiny: TinyFeatures, out: Path):
    """The trainer's ``TrainPaths`` over the tiny features, writing into ``out``."""
    from model.training.train import TrainPaths

    return TrainPaths(manifest=str(tiny.manifest), latents=str(tiny.latents), chords=str(tiny.chords),
                      melody=str(tiny.melody), stats=str(tiny.stats), out_dir=str(out), metadata=str(tiny.metadata))
