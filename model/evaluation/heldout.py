"""Held-out test material: generation prompts and the decode ceiling.

For each held-out track (splits from the metadata file) and its first ``seconds``:
- prompts for three groups: ``chords_given`` (chords + text), ``chords_dropped`` (text only; its
  progression kept as ``score_chords``), ``all_given`` (chords + melody + drums + text);
- a ``ceiling`` report: the real audio passed through the model's codec (encode + decode), with
  the same chords, melody and drum reference, so the evaluation measures what the decoder alone
  keeps. Generated adherence is read against this ceiling.
Chords come from ground-truth JSON files when given (``--truth``; the demo corpus has them), else
from the chords stage's timelines. Melody from the melody stage, drum reference = the drums
stage's stem.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from model.sampling.generate import REPORT_FORMAT, loudness_normalise, write_wav
from model.training.metadata import load_track_metadata, tracks_of
from music.frames import frames_for_seconds
from pipeline.atomic import atomic_path, atomic_write_text
from pipeline.reader import StageStore
from stages.latents.codec import Codec
from stages.melody.jasco import one_hot

GROUPS: dict[str, dict[str, bool]] = {
    "chords_given": {"chords": True, "melody": False, "drums": False},
    "chords_dropped": {"chords": False, "melody": False, "drums": False},
    "all_given": {"chords": True, "melody": True, "drums": True},
}


def crop_timeline(segments: list[dict[str, Any]] | list[list], seconds: float) -> list[list]:
    """[(label, start), ...] of the chords sounding in [0, seconds)."""
    out = []
    for seg in segments:
        label, start = (seg["label"], seg["start"]) if isinstance(seg, dict) else (seg[0], seg[1])
        if start < seconds:
            out.append([label, round(float(start), 4)])
    return out


def heldout_chords(track_id: str, audio_path: str, truth_dir: str | Path | None, chords: StageStore) -> list:
    if truth_dir is not None:
        truth = Path(truth_dir) / f"{Path(audio_path).stem}.json"
        if truth.is_file():
            return json.loads(truth.read_text(encoding="utf-8"))["chords"]
    timeline = chords.get(track_id)["timeline"]
    return json.loads(timeline) if isinstance(timeline, str) else timeline


def build_heldout(*, manifest: str, metadata: str, chords_dir: str, melody_dir: str, drums_dir: str,
                  out_dir: str | Path, codec: Codec, seconds: float, splits: tuple[str, ...] = ("valid", "test"),
                  truth_dir: str | None = None, limit: int = 0, loudness_lufs: float = -16.0,
                  frame_rate: float = 50.0, progress: bool = True) -> dict[str, Any]:
    """Write OUT/prompts.jsonl and OUT/ceiling/report.json (+ clips); returns a summary."""
    from pipeline.audio import load_audio

    out_dir = Path(out_dir)
    meta = load_track_metadata(manifest, metadata)
    chords, melody, drums = StageStore(chords_dir), StageStore(melody_dir), StageStore(drums_dir)
    ids = [t for t in tracks_of(meta, splits) if t in chords and t in melody and t in drums]
    ids = [t for t in ids if meta[t].duration >= seconds]
    if limit:
        ids = ids[:limit]
    if not ids:
        raise ValueError(f"no held-out track of splits {splits} with all features and >= {seconds} s")
    n_frames = frames_for_seconds(seconds, frame_rate)
    prompts, ceiling = [], []
    for number, tid in enumerate(tqdm(ids, desc="held-out", disable=not progress)):
        name = f"heldout_{number:03d}"
        timeline = crop_timeline(heldout_chords(tid, meta[tid].path, truth_dir, chords), seconds)
        index = np.asarray(melody.get(tid)["melody_index"][:n_frames], dtype=np.int64)
        melody_rel = f"melody/{name}.npy"
        (out_dir / "melody").mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / melody_rel) as temp, open(temp, "wb") as handle:
            np.save(handle, one_hot(index))
        stem = (Path(drums_dir) / drums.get(tid)["stem_path"]).resolve()
        drums_rel = os.path.relpath(stem, out_dir)
        for group, given in GROUPS.items():
            prompts.append({"id": f"{name}_{group}", "group": group, "description": meta[tid].description,
                            "duration": seconds, "chords": timeline if given["chords"] else None,
                            "score_chords": timeline, "melody": melody_rel if given["melody"] else None,
                            "drums": drums_rel if given["drums"] else None})
        audio = load_audio(meta[tid].path, sample_rate=codec.sample_rate, channels=1, duration_s=seconds)[0][0]
        decoded = codec.decode(codec.encode(audio))
        clip = out_dir / "ceiling" / "clips" / f"{name}.wav"
        write_wav(clip, loudness_normalise(decoded, codec.sample_rate, loudness_lufs), codec.sample_rate)
        ceiling.append({"id": name, "wav": os.path.relpath(clip, out_dir / "ceiling"), "group": "ceiling",
                        "duration_s": len(decoded) / codec.sample_rate, "description": meta[tid].description,
                        "conditions": {"chords": True, "melody": True, "drums": True, "text": True},
                        "chords": timeline, "melody": os.path.relpath(out_dir / melody_rel, out_dir / "ceiling"),
                        "melody_frame_rate": frame_rate, "drums": os.path.relpath(stem, out_dir / "ceiling"),
                        "source_track": tid})
    atomic_write_text(out_dir / "prompts.jsonl", "".join(json.dumps(p) + "\n" for p in prompts))
    report = {"format": REPORT_FORMAT, "sample_rate": codec.sample_rate, "clips": ceiling, "rejects": [],
              "generation": {"codec_round_trip": codec.name}}
    atomic_write_text(out_dir / "ceiling" / "report.json", json.dumps(report, indent=1) + "\n")
    return {"tracks": len(ids), "prompts": len(prompts), "seconds": seconds}

