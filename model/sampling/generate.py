"""Batch generation from a prompts JSONL: ``chordflow generate --prompts P.jsonl --out DIR``.

One JSON object per line (paths relative to the prompts file's folder):
    {"id": "intro", "description": "calm piano", "chords": [["C", 0.0], ["G", 2.5]],
     "drums": "refs/beat.wav", "melody": "refs/tune.wav" | "refs/tune.npy", "duration": 10.0,
     "group": "demo", "score_chords": [["C", 0.0], ...]}
Every key but ``description`` is optional; ``drums`` is reference audio whose drum part the
project's drums stage separates and the model's codec encodes; ``melody`` is audio (run through
the melody stage) or a (T, 53) / (53, T) matrix at the model frame rate. ``score_chords`` is the
progression an evaluation scores against when ``chords`` is withheld (held-out tests). Chords by
bars, MIDI melodies, ``controls_from`` a song and editing a user's ``audio`` (``continue_after``,
``regenerate``): model/sampling/prompts.py.
Settings: the checkpoint's recommended ones (the ``generate`` params it was trained with), then the
given params ``generate`` section, then ``--set`` overrides (:func:`generation_settings`).
Writes ``DIR/clips/<id>.wav`` (loudness-normalised) and ``DIR/report.json`` (the format that
``chordflow eval`` reads); a bad line is reported in ``rejects`` and the rest still run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from model.artifact import RunArtifact
from model.checkpoint import load_artifact
from model.config import GenerateConfig
from model.sampling.prompts import Prompt, read_prompts
from model.sampling.sample import MusicGenerator
from pipeline.atomic import atomic_path, atomic_write_text
from pipeline.config import load_config, load_section
from stages.chords.stage import ChordsConfig
from stages.drums.config import DrumsConfig
from stages.melody.config import MelodyConfig

REPORT_FORMAT = "chordflow.generation/1"
PEAK_LIMIT = 0.99


def generation_settings(artifact: RunArtifact, section: Mapping[str, Any] | None = None,
                        overrides: Mapping[str, Any] | None = None) -> GenerateConfig:
    """The run's recommended settings, then a params ``generate`` section, then single overrides."""
    values = {**dataclasses.asdict(artifact.generate), **(section or {}), **(overrides or {})}
    return load_config(GenerateConfig, values, where="generate")


def load_generator(checkpoint: str | Path, section: Mapping[str, Any] | None = None,
                   overrides: Mapping[str, Any] | None = None, t5: str | None = None,
                   chord_map: str | None = None) -> MusicGenerator:
    """A :class:`MusicGenerator` of ``checkpoint`` (a chordflow checkpoint or a released JASCO folder,
    whose T5 folder and chord map ``t5`` / ``chord_map`` give) with :func:`generation_settings` applied."""
    from model.jasco.release import is_release

    if is_release(checkpoint):
        from model.jasco.artifact import release_artifact

        artifact = release_artifact(checkpoint, t5=t5, chord_map=chord_map)
    elif t5 or chord_map:
        raise ValueError(f"{checkpoint}: --t5 / --chord-map apply to released JASCO folders only")
    else:
        artifact = load_artifact(checkpoint)
    return MusicGenerator(artifact, settings=generation_settings(artifact, section, overrides))


@dataclass(frozen=True)
class ReferenceConfigs:
    """The drums and melody stage configs that turn a prompt's reference files into controls."""

    drums: DrumsConfig = field(default_factory=DrumsConfig)
    melody: MelodyConfig = field(default_factory=MelodyConfig)
    chords: ChordsConfig = field(default_factory=ChordsConfig)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "ReferenceConfigs":
        """Parse the params sections ``drums``, ``melody`` and ``chords`` (strictly, once, at the edge)."""
        return cls(drums=load_section(DrumsConfig, "drums", params),
                   melody=load_section(MelodyConfig, "melody", params),
                   chords=load_section(ChordsConfig, "chords", params))


class ControlLoader:
    """Turns reference files into controls with the project's own stages (built lazily)."""

    def __init__(self, references: ReferenceConfigs, model_frame_rate: float) -> None:
        self.references = references
        self.frame_rate = model_frame_rate
        self._separator = None
        self._melody = None
        self._chords = None
        #: MIDI melody file -> what reading it did (notes, folded into G2..B6), for the report.
        self.melody_reports: dict[str, dict[str, float | int]] = {}

    def drums(self, path: Path, is_stem: bool = False) -> tuple[np.ndarray, int]:
        """Reference audio -> (N,) drum stem and its rate (drums stage separator; ``is_stem``: the
        file is a drum part already, taken as is at the stage's rate)."""
        from pipeline.audio import load_audio
        from stages.drums.separators import make_separator

        cfg = self.references.drums
        if is_stem:
            samples, _ = load_audio(path, sample_rate=cfg.sample_rate, channels=1)
            return samples[0].astype(np.float32), cfg.sample_rate
        if self._separator is None:
            self._separator = make_separator(cfg)
            self._separator.setup()
        rate = self._separator.input_sample_rate or cfg.sample_rate
        samples, _ = load_audio(path, sample_rate=rate, channels=self._separator.input_channels or cfg.channels)
        stem = self._separator.separate(samples, rate)
        return stem.mean(axis=0).astype(np.float32), rate

    def chords(self, path: Path) -> list[list]:
        """Reference audio -> its ``[[label, start], ...]`` changes, exactly as the chords stage finds them."""
        from pipeline.audio import load_audio
        from stages.chords.stage import ChordsExtractor

        if self._chords is None:
            self._chords = ChordsExtractor(self.references.chords)
        stage = self._chords
        samples, rate = load_audio(path, sample_rate=stage.config.sample_rate, channels=1)
        return [[label, start] for label, start, _ in stage.segments(samples, rate)]

    def clip(self, path: Path, sample_rate: int) -> np.ndarray:
        """A user's clip to edit -> (N,) mono at ``sample_rate`` (the model's codec rate)."""
        from pipeline.audio import load_audio

        samples, _ = load_audio(path, sample_rate=sample_rate, channels=1)
        return samples[0]

    def song(self, path: Path, use: tuple[str, ...]) -> dict[str, Any]:
        """The ``use`` controls of one song: chords timeline, drum stem, melody matrix (by condition name)."""
        readers = {"chords": self.chords, "drums": self.drums, "melody": self.melody}
        return {name: readers[name](path) for name in use}

    def melody(self, path: Path) -> np.ndarray:
        """A melody file -> (T, 53) (or JASCO's (53, T)) melody matrix at the model frame rate.

        ``.mid``/``.midi``: the file's highest-note line (stages/melody/midi.py; what was folded into
        range is kept in :attr:`melody_reports`); ``.npy`` / ``.th``: a matrix JASCO users already
        have (``.th`` read with ``torch.load(weights_only=True)``); anything else: reference audio
        through the melody stage."""
        suffix = path.suffix.lower()
        if suffix in (".mid", ".midi"):
            from stages.melody.midi import midi_melody

            melody = midi_melody(path, self.frame_rate)
            self.melody_reports[str(path)] = melody.report()
            return melody.matrix()
        if suffix == ".npy":
            return np.load(path, allow_pickle=False).astype(np.float32)
        if suffix == ".th":
            from model.plain_file import read_plain_file

            matrix = read_plain_file(path)
            if not isinstance(matrix, torch.Tensor) or matrix.dim() != 2:
                raise ValueError(f"{path}: expected one 2-D tensor (T, 53) or (53, T), got {type(matrix).__name__}")
            return matrix.float().numpy()
        from pipeline.audio import load_audio
        from stages.melody.extractor import MelodyExtractor
        from stages.melody.jasco import one_hot

        if self._melody is None:
            self._melody = MelodyExtractor(self.references.melody)
        stage = self._melody
        samples, _ = load_audio(path, sample_rate=stage.sample_rate, channels=stage.channels)
        index = stage.extract(samples, stage.sample_rate)["melody_index"]
        return one_hot(np.asarray(index, dtype=np.int64))


def loudness_normalise(audio: np.ndarray, sample_rate: int, target_lufs: float) -> np.ndarray:
    """Scale (N,) audio to ``target_lufs`` (ITU-R BS.1770), then keep the peak under 0.99."""
    import torchaudio.functional as AF

    audio = np.nan_to_num(audio.astype(np.float32))
    if len(audio) >= int(0.4 * sample_rate) and np.abs(audio).max() > 1e-6:
        lufs = float(AF.loudness(torch.from_numpy(audio)[None], sample_rate))
        if np.isfinite(lufs):
            audio = audio * 10 ** ((target_lufs - lufs) / 20)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio * (PEAK_LIMIT / peak) if peak > PEAK_LIMIT else audio


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        sf.write(temp, audio, sample_rate, subtype="PCM_16", format="WAV")


def generate_batch_file(generator: MusicGenerator, prompts_path: str | Path, out_dir: str | Path,
                        references: ReferenceConfigs = ReferenceConfigs(), progress: bool = True,
                        loader: ControlLoader | None = None) -> dict[str, Any]:
    """Run every prompt (reference files through the stages ``references`` configures, or through
    ``loader``, whose stages are kept set up between calls); returns (and writes) the report."""
    out_dir = Path(out_dir)
    cfg = generator.params
    prompts, rejects = read_prompts(prompts_path, cfg.seconds)
    loader = loader or ControlLoader(references, generator.config.frame_rate)
    clips = []
    for prompt in tqdm(prompts, desc="load controls", disable=not progress):
        try:
            if prompt.controls_from is not None:
                song = loader.song(prompt.controls_from, prompt.use)
                if "chords" in song:
                    prompt.chords = song.pop("chords")
                prompt.controls.update(song)
            if prompt.audio_path is not None:
                prompt.controls["audio"] = loader.clip(prompt.audio_path, generator.sample_rate)
            if prompt.drums_path is not None:
                prompt.controls["drums"] = loader.drums(prompt.drums_path, prompt.drums_is_stem)
            if prompt.melody_path is not None:
                prompt.controls["melody"] = loader.melody(prompt.melody_path)
                if str(prompt.melody_path) in loader.melody_reports:
                    prompt.controls["melody_source"] = loader.melody_reports[str(prompt.melody_path)]
        except Exception as exc:  # a bad reference file rejects its prompt, not the run
            rejects.append({"where": prompt.id, "reason": f"{type(exc).__name__}: {exc}"})
            prompt.controls["failed"] = True
    todo = [p for p in prompts if not p.controls.get("failed")]
    bar = tqdm(total=len(todo), desc="generate", unit="clip", disable=not progress)
    for duration, seed, batch in _batches(todo, cfg.batch_size, cfg.seed):
        # the loader separated the drum references already (drums stage settings)
        generator.set_generation_params(duration=duration, seed=seed, separate_drums=False)
        edit = _batch_edit(batch, generator.sample_rate)
        try:
            audio = generator.generate_music(
                [p.description for p in batch], chords=[p.chords for p in batch],
                drums_wav=[p.controls["drums"][0] if "drums" in p.controls else None for p in batch],
                drums_sample_rate=next((p.controls["drums"][1] for p in batch if "drums" in p.controls), None),
                melody_salience_matrix=[p.controls.get("melody") for p in batch], spans=[p.spans for p in batch],
                **edit)
        except ValueError as exc:   # e.g. an edit that does not fit its clip: that batch only
            rejects.extend({"where": p.id, "reason": str(exc)} for p in batch)
            bar.update(len(batch))
            continue
        for prompt, wav in zip(batch, audio):
            clips.append(_write_clip(out_dir, prompt, wav, generator, cfg.loudness_lufs))
        bar.update(len(batch))
    bar.close()
    report = {"format": REPORT_FORMAT, "sample_rate": generator.sample_rate, "clips": clips, "rejects": rejects,
              "generation": {"cfg_coef_all": cfg.cfg_coef_all, "cfg_coef_txt": cfg.cfg_coef_txt,
                             "solver": cfg.solver, "steps": cfg.steps, "model_calls_per_window":
                             getattr(generator, "last_function_evaluations", None)}}
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=1) + "\n")
    return report


def _batch_edit(batch: list[Prompt], sample_rate: int) -> dict[str, Any]:
    """generate_music's editing arguments for a batch (an editing prompt is always generated alone)."""
    prompt = batch[0]
    if prompt.audio_path is None:
        return {}
    return {"audio": prompt.controls["audio"], "audio_sample_rate": sample_rate,
            "continue_after": prompt.continue_after, "regenerate": prompt.regenerate}


def _batches(prompts: list[Prompt], batch_size: int, seed: int) -> list[tuple[float, int, list[Prompt]]]:
    """(duration, seed, prompts) of each generation call: prompts of one duration in batches of
    ``batch_size`` seeded ``seed + first index``; a prompt with its own ``seed`` alone, with that seed
    (so its noise depends on nothing else in the file)."""
    by_duration: dict[float, list[Prompt]] = {}
    for prompt in prompts:
        if prompt.seed is None and prompt.audio_path is None:
            by_duration.setdefault(prompt.duration, []).append(prompt)
    calls = [(duration, seed + first, items[first: first + batch_size])
             for duration, items in sorted(by_duration.items()) for first in range(0, len(items), batch_size)]
    alone = [p for p in prompts if p.seed is not None or p.audio_path is not None]
    return calls + [(p.duration, p.seed if p.seed is not None else seed, [p]) for p in alone]


def _edit_report(prompt: Prompt, wav: np.ndarray, sample_rate: int) -> dict[str, Any] | None:
    """What was kept of the user's clip and how its seams measure (model/evaluation/seams.py)."""
    if prompt.audio_path is None:
        return None
    from model.evaluation.seams import edit_seams, seam_flux_ratio

    seams = edit_seams(prompt.continue_after, prompt.regenerate, prompt.duration)
    return {"audio": str(prompt.audio_path), "continue_after": prompt.continue_after,
            "regenerate": prompt.regenerate, "seams": seam_flux_ratio(wav, sample_rate, seams)}


def _write_clip(out_dir: Path, prompt: Prompt, wav: np.ndarray, generator: MusicGenerator,
                target_lufs: float) -> dict[str, Any]:
    clip_path = out_dir / "clips" / f"{prompt.id}.wav"
    write_wav(clip_path, loudness_normalise(wav, generator.sample_rate, target_lufs), generator.sample_rate)
    melody_rel = None
    if "melody" in prompt.controls:
        melody_path = out_dir / "clips" / f"{prompt.id}.melody.npy"
        with atomic_path(melody_path) as temp:
            with open(temp, "wb") as handle:
                np.save(handle, generator.melody_condition(prompt.controls["melody"], generator.frames_for(prompt.duration)))
        melody_rel = os.path.relpath(melody_path, out_dir)
    return {
        "id": prompt.id, "wav": os.path.relpath(clip_path, out_dir), "duration_s": len(wav) / generator.sample_rate,
        "description": prompt.description, "group": prompt.group or "default",
        "conditions": {"chords": prompt.chords is not None, "drums": "drums" in prompt.controls,
                       "melody": "melody" in prompt.controls, "text": bool(prompt.description)},
        "chords": prompt.chords if prompt.chords is not None else prompt.score_chords,
        "melody": melody_rel, "melody_frame_rate": generator.config.frame_rate,
        "melody_source": prompt.controls.get("melody_source"),
        "drums": os.path.relpath(prompt.drums_path or prompt.controls_from, out_dir)
        if "drums" in prompt.controls else None,
        "controls_from": os.path.relpath(prompt.controls_from, out_dir) if prompt.controls_from else None,
        "spans": prompt.spans,
        "edit": _edit_report(prompt, wav, generator.sample_rate),
    }
