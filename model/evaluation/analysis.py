"""Run the project's own stages on generated clips: what the chords, melody and drums analysers
hear, decoding each clip once (the scores are in :mod:`model.evaluation.score`)."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from model.evaluation.config import AnalyserConfigs, ModelEvalConfig
from model.evaluation.report import ClipRequest

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ClipAnalysis:
    """What the analysers heard in one generated clip (None: not analysed; see ``errors``)."""

    duration_s: float = math.nan
    timeline: list[tuple[str, float, float]] | None = None  # Chordino segments tiling the clip
    chord_frames: np.ndarray | None = None  # (frames,) int16 at the chords stage's frame rate
    melody_index: np.ndarray | None = None  # (frames,) int16 at the melody stage's frame rate, -1 unvoiced
    onsets: np.ndarray | None = None  # (K,) seconds, on the separated drum part
    embedding: np.ndarray | None = None  # (windows, D) Fréchet embedding
    judged: Any = None  # model.evaluation.judges.panel.JudgedClip: what the independent judges heard
    seconds: float = 0.0  # analysis wall time
    errors: dict[str, str] = dataclasses.field(default_factory=dict)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _deliver(stage: Any, samples: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """(C, N) audio at ``sr`` in the format the stage asks the loader for (as the runner delivers it)."""
    from pipeline.audio import convert_channels, resample

    if stage.channels:
        samples = convert_channels(samples, stage.channels)
    if stage.sample_rate and stage.sample_rate != sr:
        samples, sr = resample(samples, sr, stage.sample_rate), stage.sample_rate
    return samples, sr


class Analysers:
    """The chords, melody and drums stages built from ``stages``, set up on first use; a stage that
    cannot be set up (e.g. DeepSalience weights missing) is recorded in ``skipped``, not raised."""

    def __init__(self, stages: AnalyserConfigs, config: ModelEvalConfig) -> None:
        from pipeline.stage import create_stage

        self.config = config
        self.chords = create_stage("chords", stages.chords)
        # melody.threads as configured, as in the workers: the same count gives the same salience
        self.melody = create_stage("melody", stages.melody)
        self.drums = create_stage("drums", stages.drums)
        self.skipped: dict[str, str] = {}
        self._judges: Any = None
        self._ready: set[str] = set()
        self._reference_onsets: dict[Path, np.ndarray] = {}
        self._melody_requests: dict[Path, np.ndarray] = {}

    def ready(self, part: str) -> bool:
        if part not in self._ready and part not in self.skipped:
            try:
                getattr(self, part).setup()
                self._ready.add(part)
            except Exception as exc:  # a missing model or plugin skips its metrics, with the reason
                self.skipped[part] = _error(exc)
                log.warning("eval: %s metrics skipped: %s", part, self.skipped[part])
        return part in self._ready

    @property
    def judges(self) -> Any:
        """The independent judges (:class:`model.evaluation.judges.panel.JudgePanel`), built on first use."""
        if self._judges is None:
            from model.evaluation.judges.panel import JudgePanel

            self._judges = JudgePanel(self.config.judges)
        return self._judges

    def analyse(self, clip: ClipRequest, embedding: bool, judges: bool = False) -> ClipAnalysis:
        """Decode ``clip.wav`` once and run the analysers its request needs; ``judges``: the
        independent judges too (their embedding only with ``embedding``)."""
        from pipeline.audio import load_audio
        from model.evaluation.embedding import embed
        from stages.drums.onsets import detect_onsets

        started = time.perf_counter()
        result = ClipAnalysis()
        try:
            samples, sr = load_audio(clip.wav)
        except Exception as exc:
            message = _error(exc)
            result.errors["audio"] = message if str(clip.wav) in message else f"{clip.wav}: {message}"
            return result
        result.duration_s = samples.shape[1] / sr
        parts: list[tuple[str, Callable[[], None]]] = []
        if self.ready("chords"):
            def chords() -> None:
                values = self.chords.extract(*_deliver(self.chords, samples, sr))
                result.timeline = [(s["label"], s["start"], s["end"]) for s in values["timeline"]]
                result.chord_frames = values["chord_index"]
            parts.append(("chords", chords))
        if clip.melody is not None and self.ready("melody"):
            def melody() -> None:
                result.melody_index = self.melody.extract(*_deliver(self.melody, samples, sr))["melody_index"]
            parts.append(("melody", melody))
        if clip.drums is not None and self.ready("drums"):
            def drums() -> None:
                stem = self.drums.extract(*_deliver(self.drums, samples, sr))["stem"]
                result.onsets = detect_onsets(stem, self.drums.config.sample_rate, self.drums.config.onset)
            parts.append(("drums", drums))
        if embedding:
            def frechet() -> None:
                rate = self.config.frechet.sample_rate
                mono, _ = _deliver(_Format(rate, 1), samples, sr)
                result.embedding = embed(mono[0], self.config.frechet)
            parts.append(("frechet", frechet))
        if judges:
            def judged() -> None:
                result.judged = self.judges.hear(samples, sr, melody=clip.melody is not None,
                                                 melody_frame_rate=self.melody.config.frame_rate,
                                                 embedding=embedding, errors=result.errors)
            parts.append(("judges", judged))
        for name, run in parts:
            try:
                run()
            except Exception as exc:  # one unreadable or degenerate clip must not stop the evaluation
                result.errors[name] = _error(exc)
        result.seconds = time.perf_counter() - started
        return result

    def reference_onsets(self, path: Path) -> np.ndarray:
        """Onsets (s) of a reference drums audio file, analysed as is (it is a drum track)."""
        from pipeline.audio import load_audio
        from stages.drums.onsets import detect_onsets

        if path not in self._reference_onsets:
            rate = self.drums.config.sample_rate
            samples, _ = load_audio(path, sample_rate=rate, channels=1)
            self._reference_onsets[path] = detect_onsets(samples, rate, self.drums.config.onset)
        return self._reference_onsets[path]

    def melody_request(self, path: Path) -> np.ndarray:
        """The requested (T, 53) melody matrix of ``path`` (.npy)."""
        from stages.melody.constants import JASCO_N_SEMITONES

        if path not in self._melody_requests:
            matrix = np.load(path, allow_pickle=False)
            if matrix.ndim != 2 or matrix.shape[1] != JASCO_N_SEMITONES:
                raise ValueError(f"{path}: melody matrix must be (T, {JASCO_N_SEMITONES}), got {matrix.shape}")
            self._melody_requests[path] = matrix.astype(np.float32)
        return self._melody_requests[path]


@dataclasses.dataclass(frozen=True)
class _Format:
    """A stand-in stage for :func:`_deliver`: just the wanted rate and channel count."""

    sample_rate: int
    channels: int
