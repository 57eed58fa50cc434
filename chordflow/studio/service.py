"""The studio's work, without any web framework: uploads checked, generation, figures, temp files.

One :class:`StudioService` per server. It keeps one model and the stages set up between requests
(as JASCO's app keeps its last model), runs one generation at a time, and owns a temporary folder
that holds every upload and output; the folder is removed when the service closes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from chordflow.studio.catalog import ModelCatalog
from chordflow.studio.config import VARIATIONS, StudioConfig, StudioError
from chordflow.studio.request import StudioRequest, prompt_rows, prompts_document, stage_sections

#: Uploads that are matrices or scores, not audio (no duration to check).
MATRIX_SUFFIXES = (".npy", ".th", ".mid", ".midi")
#: progress(done, total or None for adaptive solvers, what)
Progress = Callable[[int, "int | None", str], None]


class Interrupted(RuntimeError):
    """The user pressed interrupt; raised from inside the sampler at the next model call."""


@dataclass
class Variation:
    wav: Path
    duration_s: float
    chord_figure: Path
    spectrogram: Path
    downloads: list[Path]
    chord_accuracy: float | None = None


@dataclass
class StudioResult:
    folder: Path
    variations: list[Variation]
    seconds: float
    rejects: list[dict[str, str]] = field(default_factory=list)


@dataclass
class SongControls:
    chords_text: str
    melody: Path
    figure: Path
    duration_s: float


def chords_text(timeline: list) -> str:
    """A timeline in JASCO's written form, ``(C, 0.0), (G, 2.5)`` (what the chords field reads)."""
    return ", ".join(f"({label}, {round(float(start), 3):g})" for label, start, *_ in timeline)


def guidance_fields(settings: Any) -> dict[str, Any]:
    """A GenerateConfig's guidance and solver, as the page's fields show them."""
    return {"cfg_coef_all": settings.cfg_coef_all, "cfg_coef_txt": settings.cfg_coef_txt,
            "solver": settings.solver, "steps": settings.steps, "tolerance": settings.atol}


class StudioService:
    def __init__(self, config: StudioConfig, work_dir: Path | None = None) -> None:
        from model.evaluation.config import eval_settings
        from model.sampling.generate import ReferenceConfigs
        from pipeline.config import read_params_if_present

        self.config = config
        self.catalog = ModelCatalog(config.models_dir)
        params = read_params_if_present(config.params) if config.params else {}
        self.references = ReferenceConfigs.from_params(params)
        self.eval_config, self.analyser_configs = eval_settings(params)
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="chordflow-studio-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._busy = threading.Lock()
        self._interrupting = threading.Event()
        self._model: tuple[tuple[str, str, float], Any] | None = None
        self._loaders: dict[float, Any] = {}
        self._analysers = None

    # ------------------------------------------------------------------ files
    def check_upload(self, path: str | Path | None, what: str) -> Path | None:
        """An uploaded file, refused (with a message naming it) when too large, too long or unreadable."""
        if path is None or str(path) == "":
            return None
        from pipeline.audio import AudioError, probe_audio

        path = Path(path)
        if not path.is_file():
            raise StudioError(f"{what}: the upload {path.name} is gone; upload it again")
        size_mb = path.stat().st_size / 1e6
        if size_mb > self.config.max_upload_mb:
            raise StudioError(f"{what}: {path.name} is {size_mb:.1f} MB, over the {self.config.max_upload_mb:g} MB "
                              f"an upload may have")
        if path.suffix.lower() in MATRIX_SUFFIXES:
            return path
        try:
            seconds = probe_audio(path).duration
        except AudioError as exc:
            raise StudioError(f"{what}: cannot read {path.name} as audio ({exc.reason})") from None
        if seconds > self.config.max_upload_seconds:
            raise StudioError(f"{what}: {path.name} lasts {seconds:.0f} s, over the "
                              f"{self.config.max_upload_seconds:g} s an upload may last")
        return path

    def _new_folder(self, kind: str) -> Path:
        self.prune()
        folder = self.work_dir / "requests" / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    def prune(self, now: float | None = None) -> int:
        """Remove request folders older than the configured lifetime; returns how many."""
        now = time.time() if now is None else now
        removed = 0
        for folder in (self.work_dir / "requests").glob("*"):
            if now - folder.stat().st_mtime > self.config.file_lifetime_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    def close(self) -> None:
        """Remove every upload and output of this server."""
        shutil.rmtree(self.work_dir, ignore_errors=True)

    # ------------------------------------------------------------------ shared state
    def generator(self, name: str):
        """The chosen model, loaded once (reloaded when its file changes)."""
        from model.sampling.generate import load_generator

        path = self.catalog.path_of(name)
        key = (name, str(path), path.stat().st_mtime if path.exists() else 0.0)
        if self._model is None or self._model[0] != key:
            self._model = None  # a failed load must not leave the previous model half-replaced
            try:
                release = {"t5": self.config.t5, "chord_map": self.config.chord_map} if path.is_dir() else {}
                self._model = (key, load_generator(path, **{k: str(v) for k, v in release.items() if v}))
            except FileNotFoundError as exc:
                raise StudioError(f"model {name}: {path} is missing ({exc})") from None
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise StudioError(f"model {name}: cannot load {path}: {exc}") from None
        return self._model[1]

    def recommended(self, name: str) -> dict[str, Any]:
        """The settings the chosen checkpoint recommends (what the page's guidance fields start from)."""
        return guidance_fields(self.generator(name).artifact.generate)

    def loader(self, frame_rate: float):
        from model.sampling.generate import ControlLoader

        if frame_rate not in self._loaders:
            self._loaders[frame_rate] = ControlLoader(self.references, frame_rate)
        return self._loaders[frame_rate]

    def analysers(self):
        from model.evaluation.analysis import Analysers

        if self._analysers is None:
            self._analysers = Analysers(self.analyser_configs, self.eval_config)
        return self._analysers

    def interrupt(self) -> None:
        """Stop the running generation at its next model call."""
        self._interrupting.set()

    # ------------------------------------------------------------------ generation
    def generate(self, request: StudioRequest, progress: Progress | None = None) -> StudioResult:
        """Both variations of ``request``, their figures and downloads (module doc)."""
        with self._busy:
            self._interrupting.clear()
            started = time.perf_counter()
            generator = self.generator(request.model)
            folder = self._new_folder("generate")
            references = {}
            for name, source in (("drums", request.drums), ("melody", request.melody)):
                if source is not None:
                    references[name] = f"{name}{Path(source).suffix.lower()}"
                    shutil.copyfile(source, folder / references[name])
            rows = prompt_rows(request, references)
            sections = stage_sections(self.references)
            checkpoint = self.catalog.path_of(request.model)
            for row in rows:
                document = prompts_document(request, checkpoint, [row], sections, row["id"])
                (folder / f"{row['id']}.json").write_text(json.dumps(document, indent=1, default=str) + "\n")
            (folder / "request.json").write_text(json.dumps(prompts_document(
                request, checkpoint, rows, sections, "request"), indent=1, default=str) + "\n")
            report = self._run(generator, request, folder, progress)
            if not report["clips"]:
                reasons = "; ".join(r["reason"].replace(str(folder) + "/", "") for r in report["rejects"])
                raise StudioError(f"nothing generated: {reasons}")
            variations = [self._variation(folder, clip, references, generator.sample_rate)
                          for clip in report["clips"]]
            return StudioResult(folder, variations, time.perf_counter() - started, report["rejects"])

    def _run(self, generator: Any, request: StudioRequest, folder: Path, progress: Progress | None) -> dict[str, Any]:
        from model.flow.solver import calls_per_run
        from model.sampling.generate import generate_batch_file, generation_settings

        # exactly what `chordflow generate --params variation_N.json` applies
        generator.params = generation_settings(generator.artifact, request.settings())
        per_run = calls_per_run(request.solver, request.steps)
        windows = len(generator.window_starts(generator.frames_for(request.duration)))
        total = None if per_run is None else per_run * windows * VARIATIONS
        calls = 0

        def before_model_call(module: Any, inputs: Any) -> None:
            nonlocal calls
            if self._interrupting.is_set():
                raise Interrupted("interrupted")
            calls += 1
            if progress is not None:
                progress(calls, total, "sampling")

        hook = generator.model.register_forward_pre_hook(before_model_call)
        try:
            return generate_batch_file(generator, folder / "request.json", folder, self.references, progress=False,
                                       loader=self.loader(generator.config.frame_rate))
        finally:
            hook.remove()

    def _variation(self, folder: Path, clip: dict[str, Any], references: dict[str, str], sample_rate: int) -> Variation:
        from model.evaluation.plot import plot_request
        from model.evaluation.report import ClipRequest
        from model.evaluation.score import chord_accuracy, requested_segments
        from pipeline.audio import load_audio
        from chordflow.studio.figures import plot_spectrogram
        from stages.melody.jasco import melody_index

        wav = folder / clip["wav"]
        melody = folder / clip["melody"] if clip.get("melody") else None
        analysers = self.analysers()
        analysis = analysers.analyse(ClipRequest(id=clip["id"], wav=wav, duration_s=clip["duration_s"], group="studio",
                                                 conditions=clip["conditions"], melody=melody), embedding=False)
        if analysis.timeline is None:
            reason = analysis.errors.get("chords") or analysers.skipped.get("chords", "not analysed")
            raise StudioError(f"{wav.name}: the chords analyser failed ({reason})")
        duration = clip["duration_s"]
        chords = clip["chords"] if clip["conditions"]["chords"] else None
        accuracy = None
        if chords:
            accuracy = float(chord_accuracy(chords, duration, analysis.timeline, self.eval_config.chord_metric))
        title = (f"{clip['id']}: requested vs extracted chords (the eval's Chordino)"
                 + (f", {self.eval_config.chord_metric} accuracy {accuracy:.2f}" if accuracy is not None else ""))
        chord_png = plot_request(requested_segments(chords, duration) if chords else None, analysis.timeline, duration,
                                 folder / f"{clip['id']}.chords.png", title, self.eval_config.chord_metric)
        samples, _ = load_audio(wav, sample_rate=sample_rate, channels=1)
        lines = {}
        if melody is not None:
            lines["requested"] = (melody_index(np.load(melody, allow_pickle=False)), clip["melody_frame_rate"])
            if analysis.melody_index is not None:
                lines["extracted"] = (analysis.melody_index, self.references.melody.frame_rate)
        spectrogram = plot_spectrogram(samples[0], sample_rate, folder / f"{clip['id']}.spectrogram.png",
                                       f"{clip['id']}: spectrogram" + (", melody" if lines else ""), lines)
        downloads = [wav, folder / f"{clip['id']}.json", *(folder / name for name in references.values())]
        return Variation(wav, duration, chord_png, spectrogram, downloads, accuracy)

    # ------------------------------------------------------------------ a song's controls
    def extract_song(self, path: Path, frame_rate: float) -> SongControls:
        """Chords, melody and drum onsets of a song, as the stages extract them (module doc)."""
        from chordflow.studio.figures import plot_song
        from pipeline.audio import probe_audio
        from stages.drums.onsets import detect_onsets
        from stages.melody.jasco import melody_index
        from model.evaluation.score import requested_segments

        with self._busy:
            folder = self._new_folder("song")
            loader = self.loader(frame_rate)
            duration = probe_audio(path).duration
            try:
                timeline = loader.chords(path)
                matrix = loader.melody(path)
                stem, rate = loader.drums(path)
            except Exception as exc:  # an unreadable or degenerate song: a message, not a dead page
                raise StudioError(f"song {path.name}: the stages could not read it ({type(exc).__name__}: {exc})") from None
            melody_path = folder / "song_melody.npy"
            np.save(melody_path, matrix)
            onsets = detect_onsets(stem[None], rate, self.references.drums.onset)
            figure = plot_song(requested_segments([tuple(c) for c in timeline], duration), melody_index(matrix),
                               frame_rate, onsets, duration, folder / "song_controls.png",
                               f"{path.name}: chords, melody and drum onsets as the stages extract them")
            return SongControls(chords_text(timeline), melody_path, figure, duration)
