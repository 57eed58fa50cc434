"""Render one planned clip to its files: mix, drum stem, MIDI and truth sidecar.

Every file is written atomically and the truth JSON last: a clip is complete exactly when its
truth exists, carries the current parameter hash and all the files it lists exist. That makes an
interrupted render resumable and a repeated one a no-op.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import atomic_write_bytes, atomic_write_text
from pipeline.corpus.arrange import midi_bytes
from pipeline.corpus.compose import MAX_ATTEMPTS, Composition, attempt_kind, compose
from pipeline.corpus.config import CORPUS_VERSION, MELODY_FRAME_RATE, CorpusConfig
from pipeline.corpus.plan import ClipPlan
from pipeline.corpus.render import (
    check_soundfont, convert, find_fluidsynth, fit_length, normalisation_gain, synthesize, write_audio,
)
from pipeline.corpus.truth import build_truth, read_truth, truth_json

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ClipResult:
    """Outcome of one clip: its index line (None if it failed), whether it was rendered now,
    the reasons of replaced attempts, and the seconds spent."""

    index: int
    entry: dict[str, Any] | None
    rendered: bool
    replaced: tuple[str, ...] = ()
    error: str | None = None
    seconds: float = 0.0


def index_entry(truth: dict[str, Any]) -> dict[str, Any]:
    """The ``index.jsonl`` line of a clip, from its truth."""
    files, audio = truth["files"], truth["audio"]
    return {
        "clip_id": truth["clip_id"], "audio": files["audio"], "truth": files["truth"], "midi": files["midi"],
        "drum_stem": files["drum_stem"], "duration": truth["duration"], "source": truth["source"],
        "split": truth["split"], "format": audio["format"], "sample_rate": audio["sample_rate"],
        "channels": audio["channels"], "has_drums": truth["drum_style"] is not None,
    }


def completed_truth(root: Path, plan: ClipPlan) -> dict[str, Any] | None:
    """The clip's truth if the clip is complete and current, else None."""
    truth = read_truth(root / plan.relative_paths()["truth"])
    if not truth or truth.get("params_hash") != plan.params_hash:
        return None
    if not all((root / rel).is_file() for rel in truth.get("files", {}).values()):
        return None
    return truth


def _render_audio(config: CorpusConfig, composition: Composition, workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(mix, drum stem) as (N, 2) float32 at the render rate, cut to the clip's exact length."""
    song, arrangement = composition.song, composition.arrangement
    fluidsynth, soundfont = find_fluidsynth(config.fluidsynth), check_soundfont(config.soundfont)
    n_samples = int(round(song.duration * config.sample_rate))
    fade = int(round(config.fade_out_seconds * config.sample_rate))
    mix_midi = workdir / "mix.mid"
    mix_midi.write_bytes(midi_bytes(song, arrangement.tracks))
    render = dict(fluidsynth=fluidsynth, soundfont=soundfont, sample_rate=config.sample_rate, gain=config.synth_gain)
    mix = fit_length(synthesize(mix_midi, workdir / "mix.wav", **render), n_samples, fade)
    drums = arrangement.track("drums")
    if drums is None:
        return mix, np.zeros_like(mix)
    stem_midi = workdir / "drums.mid"
    stem_midi.write_bytes(midi_bytes(song, [drums]))
    return mix, fit_length(synthesize(stem_midi, workdir / "drums.wav", **render), n_samples, fade)


def _write_clip(config: CorpusConfig, plan: ClipPlan, root: Path, composition: Composition,
                replaced: list[str]) -> dict[str, Any]:
    paths = plan.relative_paths()
    with tempfile.TemporaryDirectory(prefix="chordflow-corpus-") as tmp:
        mix, stem = _render_audio(config, composition, Path(tmp))
    mix = convert(mix, config.sample_rate, plan.audio_format)
    stem = convert(stem, config.sample_rate, plan.stem_format)
    # One gain for mix and stem, measured on the stored version (after resampling / downmix), so
    # the stem stays exactly the drum part of the mix and every format gets the same loudness.
    gain = normalisation_gain(mix, config.target_rms_dbfs, config.peak_dbfs)
    write_audio(root / paths["audio"], mix * gain, plan.audio_format)
    write_audio(root / paths["drum_stem"], stem * gain, plan.stem_format)
    atomic_write_bytes(root / paths["midi"], midi_bytes(composition.song, composition.arrangement.tracks))
    header = {
        "clip_id": plan.clip_id, "index": plan.index, "seed": config.seed, "params_hash": plan.params_hash,
        "corpus_version": CORPUS_VERSION, "split": plan.split, "format_slice": plan.in_format_slice,
        "files": paths, "audio": plan.audio_format.to_json(), "drum_stem_audio": plan.stem_format.to_json(),
        "render": {"soundfont": Path(config.soundfont).name, "render_sample_rate": config.sample_rate,
                   "normalisation_gain_db": round(float(20 * np.log10(gain)), 3)},
        "generation": {"planned_source": plan.kind, "attempt": composition.attempt, "replaced": replaced},
    }
    truth = build_truth(composition.song, composition.arrangement, frame_rate=MELODY_FRAME_RATE,
                        description=composition.description, header=header)
    atomic_write_text(root / paths["truth"], truth_json(truth))
    _remove_other_versions(root, plan)
    return truth


def _remove_other_versions(root: Path, plan: ClipPlan) -> None:
    """Delete this clip's files in other formats (left by a render with other parameters)."""
    current = {root / rel for rel in plan.relative_paths().values()}
    for path in current:
        for sibling in path.parent.glob(f"{plan.clip_id}.*"):
            if sibling not in current:
                sibling.unlink(missing_ok=True)


def render_clip(config: CorpusConfig, plan: ClipPlan, root: str | Path) -> ClipResult:
    """Render ``plan`` under ``root`` unless it is already complete; never raises for a bad clip."""
    started = time.perf_counter()
    root = Path(root)
    existing = completed_truth(root, plan)
    if existing is not None:
        return ClipResult(plan.index, index_entry(existing), rendered=False)
    replaced: list[str] = []
    for attempt in range(MAX_ATTEMPTS):
        try:
            composition = compose(config, plan.index, plan.kind, attempt)
            truth = _write_clip(config, plan, root, composition, replaced)
            return ClipResult(plan.index, index_entry(truth), True, tuple(replaced),
                              seconds=time.perf_counter() - started)
        except Exception as exc:  # a broken piece or failed render must not stop the corpus
            reason = f"attempt {attempt} ({attempt_kind(plan.kind, attempt)}): {type(exc).__name__}: {exc}"
            log.debug("%s: %s", plan.clip_id, reason)
            replaced.append(reason)
    return ClipResult(plan.index, None, False, tuple(replaced), error="; ".join(replaced),
                      seconds=time.perf_counter() - started)
