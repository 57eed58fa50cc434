"""Sampling: a JASCO-like Python API over a checkpoint's run artifact.

    gen = MusicGenerator.from_checkpoint("models/demo/checkpoint.pt")   # the run's generate settings
    gen.set_generation_params(cfg_coef_all=5.0, cfg_coef_txt=0.0, guidance_interval=(0.0, 1.0))  # e.g. JASCO's
    wavs = gen.generate_music(["calm piano"], chords=[("C", 0.0), ("G", 2.5)], progress=True)  # (B, N)

Multi-source classifier-free guidance, batched in one forward pass per solver step:
    v = w_all * v(all given) + w_txt * v(text only) + (1 - w_all - w_txt) * v(none)
(the text-only branch is skipped when w_txt = 0), at flow times inside ``guidance_interval``; outside
it the plain conditional velocity v(all) is used. Pieces longer than ``window_seconds`` are
continued window by window: each new window's first ``overlap_seconds`` are pinned to the previous
window's result by giving those frames the exact velocity of their straight OT path (x1 known),
which every solver then integrates exactly, so the model sees consistent context.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from model.artifact import RunArtifact
from model.checkpoint import load_artifact, model_from_artifact
from model.network.conditioners import Conditions, keep_mask_from_flags
from model.device import resolve_device
from model.flow.guidance import shape_guidance
from model.flow.path import CondOTPath
from model.flow.solver import solve
from model.network.text import TextEncoder
from model.sampling.editing import Edit, free_frames, kept_latents, pinned_velocity, span_frames
from model.sampling.jasco import guidance_batch, guidance_terms
from music.conditions import CONDITION_NAMES
from music.frames import frames_for_seconds
from stages.chords.frames import timeline_to_frames
from stages.latents.codec import Codec
from stages.melody.jasco import melody_index, one_hot

if TYPE_CHECKING:
    from model.config import GenerateConfig

Timeline = Sequence[tuple[str, float]]


#: Folder of Demucs weights for separating drums references in the Python API.
DEMUCS_WEIGHTS_ENV = "CHORDFLOW_DEMUCS_WEIGHTS"
#: Long pieces are decoded this many seconds at a time (bounded memory), each chunk with
#: DECODE_CONTEXT_SECONDS of latents on either side that are cut away; shorter pieces decode whole.
DECODE_CHUNK_SECONDS = 30.0
DECODE_CONTEXT_SECONDS = 2.0


class GenerationError(ValueError):
    """Controls that do not fit the request (wrong shapes, counts)."""


def guidance_weights(cfg_coef_all: float, cfg_coef_txt: float,
                     cfg_coef_drums_melody: float | None = None) -> dict[str, float]:
    """Weights of the (all, text + chords, text-only, none) velocities; they sum to 1.

    v = v(none) + (a + t) [v(text) - v(none)] + a [v(text+chords) - v(text)] + r [v(all) - v(text+chords)]
    with a = ``cfg_coef_all``, t = ``cfg_coef_txt``, r = ``cfg_coef_drums_melody`` (None: r = a, the
    two-term mix, where the text+chords velocity cancels)."""
    rest = cfg_coef_all if cfg_coef_drums_melody is None else cfg_coef_drums_melody
    return {"all": rest, "chords": cfg_coef_all - rest, "text": cfg_coef_txt, "none": 1.0 - cfg_coef_all - cfg_coef_txt}


def _per_item(value: Any, batch: int, what: str, is_single) -> list[Any]:
    """Broadcast one control to the batch, or check a per-item list has the batch's length."""
    if value is None:
        return [None] * batch
    if is_single(value):
        return [value] * batch
    items = list(value)
    if len(items) != batch:
        raise GenerationError(f"{what}: {len(items)} items for {batch} descriptions")
    return items


def _is_timeline(value: Any) -> bool:
    return len(value) == 0 or isinstance(value[0], (tuple, list)) and len(value[0]) in (2, 3) and isinstance(value[0][0], str)


class MusicGenerator:
    """A trained model, its codec, text encoder and normalisation, ready to sample.

    Its settings are ``settings`` when given (``chordflow generate`` passes the artifact's, then its
    params section, then ``--set``: :func:`model.sampling.generate.generation_settings`), else the
    artifact's recommended ones (the ``generate`` params the run was trained with, over
    :class:`~model.config.GenerateConfig`'s defaults); ``device`` and ``use_ema`` default to them too.
    """

    def __init__(self, artifact: RunArtifact, device: str | None = None, use_ema: bool | None = None,
                 codec: Codec | None = None, settings: GenerateConfig | None = None) -> None:
        self.artifact = artifact
        self.params = settings if settings is not None else artifact.generate
        self.device = resolve_device(device if device is not None else self.params.device)
        use_ema = self.params.use_ema if use_ema is None else use_ema
        self.model = model_from_artifact(artifact, use_ema=use_ema).to(self.device)
        self.config = self.model.config
        self.stats = artifact.stats
        self.normalisation = artifact.normalisation
        self.vocabulary = artifact.vocabulary.build()
        self.codec = codec or artifact.codec.build()
        self.text_encoder = TextEncoder(artifact.text, device=self.device)
        self.path = CondOTPath(self.config.sigma_min)
        self._silence: dict[int, torch.Tensor] = {}
        self._separator = None

    @classmethod
    def from_checkpoint(cls, path: str, device: str | None = None, use_ema: bool | None = None) -> "MusicGenerator":
        """Rebuild everything from the checkpoint file's run artifact alone (or a JASCO release folder)."""
        return cls(load_artifact(path), device=device, use_ema=use_ema)

    @classmethod
    def from_jasco(cls, folder: str, t5: str | None = None, chord_map: str | None = None,
                   device: str | None = None, **settings: Any) -> "MusicGenerator":
        """A released JASCO model from a local folder (``state_dict.bin``), with JASCO's defaults.

        t5: a local T5-base folder (default: $CHORDFLOW_T5, else the hub id ``t5-base``, online only);
        chord_map: JASCO's vocabulary (default, shipped) or a user's ``.json`` / ``.pkl`` label -> index map;
        settings: GenerateConfig fields over JASCO's defaults (dopri5, cfg 5.0 / 0.0, AudioCraft quirks on).
        """
        from model.jasco.artifact import release_artifact

        artifact = release_artifact(folder, t5=t5, chord_map=chord_map)
        params = dataclasses.replace(artifact.generate, **settings) if settings else artifact.generate
        return cls(artifact, device=device, settings=params)

    @property
    def is_jasco(self) -> bool:
        """JASCO's network: chords read at frame starts, melody matrices as given, drums over the segment."""
        return getattr(getattr(self.model, "config", None), "architecture", "chordflow") == "jasco"

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    def set_generation_params(self, cfg_coef_all: float | None = None, cfg_coef_txt: float | None = None,
                              solver: str | None = None, steps: int | None = None, duration: float | None = None,
                              **other: Any) -> None:
        """JASCO's knobs (plus any GenerateConfig field, e.g. ``overlap_seconds``, ``seed``)."""
        given = {"cfg_coef_all": cfg_coef_all, "cfg_coef_txt": cfg_coef_txt, "solver": solver, "steps": steps,
                 "seconds": duration, **other}
        self.params = dataclasses.replace(self.params, **{k: v for k, v in given.items() if v is not None})

    # ------------------------------------------------------------------ conditions
    def frames_for(self, seconds: float) -> int:
        return frames_for_seconds(seconds, self.config.frame_rate)

    def build_conditions(self, descriptions: Sequence[str | None], n_frames: int, chords: Any = None,
                         drums_wav: Any = None, drums_sample_rate: int | None = None,
                         melody_salience_matrix: Any = None, spans: Any = None) -> Conditions:
        """Controls -> a :class:`Conditions` batch of ``n_frames`` frames; absent controls are masked.

        spans: ``{"chords": [[start, end], ...], ...}`` (seconds; for all items, or one dict per item):
        a temporal control given only there; elsewhere the frames see it dropped."""
        batch = len(descriptions)
        timelines = _per_item(chords, batch, "chords", _is_timeline)
        drums = _per_item(drums_wav, batch, "drums_wav", lambda v: getattr(v, "ndim", None) == 1)
        melodies = _per_item(melody_salience_matrix, batch, "melody_salience_matrix", lambda v: getattr(v, "ndim", None) == 2)
        cfg = self.config
        chord_rows = np.zeros((batch, n_frames), dtype=np.int64)
        drum_rows = np.zeros((batch, n_frames, cfg.drum_dim), dtype=np.float32)
        melody_rows = np.zeros((batch, n_frames, cfg.melody_bins), dtype=np.float32)
        keep = np.zeros((batch, len(CONDITION_NAMES)), dtype=bool)
        column = {name: j for j, name in enumerate(CONDITION_NAMES)}  # keep's columns by condition name
        for i in range(batch):
            if timelines[i] is not None:
                chord_rows[i] = timeline_to_frames(timelines[i], n_frames, self.vocabulary, cfg.frame_rate,
                                                   sample_at="start" if self.is_jasco else "centre")
                keep[i, column["chords"]] = True
            if drums[i] is not None:
                drum_rows[i] = self._drum_condition(np.asarray(drums[i], dtype=np.float32), drums_sample_rate, n_frames)
                keep[i, column["drums"]] = True
            if melodies[i] is not None:
                melody_rows[i] = self.melody_condition(np.asarray(melodies[i], dtype=np.float32), n_frames)
                keep[i, column["melody"]] = True
            keep[i, column["text"]] = bool(descriptions[i])
        text, valid = self.text_encoder.encode(list(descriptions))
        frames = span_frames(_per_item(spans, batch, "spans", lambda v: isinstance(v, dict)), n_frames,
                             self.config.frame_rate)
        return Conditions(chords=torch.from_numpy(chord_rows), drums=torch.from_numpy(drum_rows),
                          melody=torch.from_numpy(melody_rows), text=text, text_valid=valid,
                          keep=torch.from_numpy(keep), frames=frames).to(self.device)

    def _drum_condition(self, wav: np.ndarray, sample_rate: int | None, n_frames: int) -> np.ndarray:
        """A drum stem (N,) (or a mix, with ``separate_drums``) -> (n_frames, drum_dim) coarse latents."""
        from pipeline.audio import resample

        if sample_rate is None:
            raise GenerationError("drums_wav needs drums_sample_rate")
        if self.params.separate_drums:
            wav, sample_rate = self._separate_drums(wav, int(sample_rate))
        wav = resample(wav[None], int(sample_rate), self.codec.sample_rate)[0]
        if self.is_jasco:  # JASCO encodes exactly the segment: trimmed or zero-padded to its length
            wav = _fit_samples(wav, n_frames * self.codec.hop_length)
        coarse = self.codec.coarse(self.codec.encode(wav))
        out = np.zeros((n_frames, coarse.shape[1]), dtype=np.float32)
        out[: min(n_frames, len(coarse))] = coarse[:n_frames]
        return out

    def set_drum_separator(self, separator: Any) -> None:
        """The separator ``separate_drums`` uses (any object with ``separate((C, N), sr) -> (C', N)``;
        default: the drums stage's Demucs with htdemucs)."""
        self._separator = separator

    def _separate_drums(self, wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
        """The drum stem of a mix (N,) with the drums stage's Demucs separator (htdemucs, as JASCO;
        weights from ``$CHORDFLOW_DEMUCS_WEIGHTS`` or the torch hub cache) -> (N,) mono at the same rate."""
        if self._separator is None:
            import os

            from stages.drums.config import DemucsConfig
            from stages.drums.demucs_separator import DemucsSeparator

            self._separator = DemucsSeparator(DemucsConfig(weights_dir=os.environ.get(DEMUCS_WEIGHTS_ENV)))
        stem = self._separator.separate(np.asarray(wav, dtype=np.float32)[None], sample_rate)
        return np.asarray(stem, dtype=np.float32).mean(axis=0), sample_rate

    def silence_drums(self, n_frames: int) -> torch.Tensor:
        """(n_frames, drum_dim) drum condition of a silent stem (AudioCraft's dropped drums, quirk (a))."""
        if n_frames not in self._silence:
            silent = np.zeros(n_frames * self.codec.hop_length, dtype=np.float32)
            self._silence[n_frames] = torch.from_numpy(self._drum_condition(silent, self.codec.sample_rate, n_frames))
        return self._silence[n_frames]

    def melody_condition(self, matrix: np.ndarray, n_frames: int) -> np.ndarray:
        """(53, T) (JASCO's layout) or (T, 53) salience at the model frame rate -> (n_frames, 53) one-hot.

        A ``jasco`` network takes the matrix as given (AudioCraft feeds it unchanged)."""
        bins = self.config.melody_bins
        if matrix.shape[0] == bins and matrix.shape[1] != bins:
            matrix = matrix.T
        if matrix.shape[1] != bins:
            raise GenerationError(f"melody_salience_matrix: expected {bins} pitch bins, got shape {matrix.shape}")
        out = np.zeros((n_frames, bins), dtype=np.float32)
        if self.is_jasco:
            rows = matrix[:n_frames]
            out[: len(rows)] = rows
            return out
        rows = one_hot(melody_index(matrix)[:n_frames].astype(np.int64), bins)
        out[: len(rows)] = rows
        return out

    # ------------------------------------------------------------------ sampling
    def guided_velocity(self, cond: Conditions):
        """The solver's velocity function: the guidance mix of (all, text + chords, text-only, none)
        (:func:`guidance_weights`), one forward pass."""
        if self.is_jasco:
            return self._jasco_velocity(cond)
        w = guidance_weights(self.params.cfg_coef_all, self.params.cfg_coef_txt, self.params.cfg_coef_drums_melody)
        given = cond.keep
        text_only = given & keep_mask_from_flags(1, text=True)[0].to(given.device)
        text_chords = given & keep_mask_from_flags(1, text=True, chords=True)[0].to(given.device)
        if torch.equal(text_chords, given):  # no drums or melody given: v(all) is v(text + chords)
            w = {**w, "all": w["all"] + w["chords"], "chords": 0.0}
        branches = [("all", given), ("chords", text_chords), ("text", text_only), ("none", torch.zeros_like(given))]
        branches = [(name, keep) for name, keep in branches if w[name] != 0.0]
        stacked = Conditions.cat([cond.with_keep(keep) for _, keep in branches])
        n = len(branches)
        start, stop = self.params.guidance_interval
        shaped = self.params.guidance_parallel != 1.0 or self.params.guidance_rescale != 0.0
        if shaped and w["all"] == 0.0:
            raise GenerationError("guidance_parallel / guidance_rescale need the all-controls branch (cfg_coef_drums_melody != 0)")
        conditional_branch = [name for name, _ in branches].index("all") if shaped else -1

        def velocity(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            if not _guided_at(float(t), start, stop):
                return self.model(x, t.expand(x.shape[0]), cond)
            times = t.expand(x.shape[0] * n)
            out = self.model(x.repeat(n, 1, 1), times, stacked).chunk(n)
            guided = sum(w[name] * v for (name, _), v in zip(branches, out))
            if not shaped:
                return guided
            return shape_guidance(self.path, x, t.expand(x.shape[0]), out[conditional_branch], guided,
                                  self.params.guidance_parallel, self.params.guidance_rescale)

        return velocity

    def _jasco_velocity(self, cond: Conditions):
        """JASCO's guidance (model/sampling/jasco.py): terms [all, text, none], quirks per the switch."""
        p = self.params
        terms = guidance_terms(p.cfg_coef_all, p.cfg_coef_txt, p.audiocraft_quirks)
        silence = self.silence_drums(cond.chords.shape[1]) if p.audiocraft_quirks and bool(cond.keep_of("drums").any()) else None
        stacked = guidance_batch(cond, terms, p.audiocraft_quirks, silence)
        plain = guidance_batch(cond, [("all", 1.0)], p.audiocraft_quirks, silence)
        start, stop = p.guidance_interval
        n = len(terms)

        def velocity(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            times = t.reshape(1)
            if not _guided_at(float(t), start, stop):
                return self.model(x, times, plain)
            out = self.model(x.repeat(n, 1, 1), times, stacked).chunk(n)
            return sum(w * v for (_, w), v in zip(terms, out))

        return velocity

    def _window_frames(self) -> tuple[int, int]:
        window = self.frames_for(self.params.window_seconds)
        return window, min(self.frames_for(self.params.overlap_seconds), window - 1)

    def window_starts(self, n_frames: int) -> list[int]:
        """First frame of each window a piece of ``n_frames`` is sampled in (one solve each)."""
        window, overlap = self._window_frames()
        starts = [0]
        while starts[-1] + window < n_frames:
            starts.append(starts[-1] + window - overlap)
        return starts

    @torch.no_grad()
    def sample_latents(self, cond: Conditions, n_frames: int, generator: torch.Generator,
                       progress: bool = False, noise: torch.Tensor | None = None,
                       edit: Edit | None = None) -> torch.Tensor:
        """(B, n_frames, D) normalised latents, window by window for long pieces.

        ``edit``: latents to keep (a user's audio): those frames are pinned to their straight path
        while solving, so the model sees them as context, and come back exactly as given."""
        p = self.params
        window, overlap = self._window_frames()
        batch, dim = cond.batch_size, self.config.latent_dim
        result = torch.zeros(batch, n_frames, dim, device=self.device)
        starts = self.window_starts(n_frames)
        for number, start in enumerate(tqdm(starts, desc="windows", disable=not progress or len(starts) == 1)):
            stop = min(start + window, n_frames)
            x0 = torch.randn(batch, stop - start, dim, generator=generator).to(self.device)
            if noise is not None and number == 0:  # e.g. another implementation's draw, to compare numbers
                x0 = noise[:, : stop - start].to(self.device, x0.dtype)
            velocity = self.guided_velocity(cond.crop(start, stop))
            pin = torch.zeros(batch, stop - start, dtype=torch.bool, device=self.device)
            target = torch.zeros_like(x0)
            if number > 0:  # the previous window's end is this window's context
                known = min(overlap, stop - start)
                pin[:, :known] = True
                target[:, :known] = result[:, start: start + known]
            kept = None
            if edit is not None:
                kept = edit.mask[:, start:stop].to(self.device)
                pin |= kept
                target = torch.where(kept[..., None], edit.latents[:, start:stop].to(self.device), target)
            if bool(pin.any()):
                velocity = pinned_velocity(velocity, pin, self.path.target_velocity(x0, target))
            solved = solve(velocity, x0, method=p.solver, steps=p.steps, atol=p.atol, rtol=p.rtol,
                           adaptive_t1=p.adaptive_end_time)
            self.last_function_evaluations = solved.function_evaluations
            out = solved.x1
            if kept is not None:  # the user's frames exactly (the path ends sigma_min short of them)
                out = torch.where(kept[..., None], edit.latents[:, start:stop].to(self.device), out)
            result[:, start:stop] = out
        return result

    def edit_of(self, audio: Any, sample_rate: int | None, n_frames: int, batch: int,
                continue_after: float | None = None, regenerate: Sequence[Sequence[float]] | None = None) -> Edit:
        """A user's clip (N,) (one for all, or one per item) -> the latents and frames to keep
        (model/sampling/editing.py: continuation or in/outpainting)."""
        if sample_rate is None:
            raise GenerationError("audio needs audio_sample_rate")
        clips = _per_item(audio, batch, "audio", lambda v: getattr(v, "ndim", None) == 1)
        free = free_frames(n_frames, self.config.frame_rate, continue_after, regenerate)
        latents = [self.stats.normalise(self.codec.encode(self._at_codec_rate(clip, int(sample_rate))), self.normalisation)
                   for clip in clips]
        keep_first = self.frames_for(continue_after) if continue_after is not None else 0
        return kept_latents(latents, free, self.config.latent_dim, min_frames=keep_first)

    def _at_codec_rate(self, wav: Any, sample_rate: int) -> np.ndarray:
        from pipeline.audio import resample

        return resample(np.asarray(wav, dtype=np.float32)[None], sample_rate, self.codec.sample_rate)[0]

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """(B, T, D) normalised latents -> (B, N) float32 audio at the codec rate (long pieces in chunks)."""
        chunk, context = self.frames_for(DECODE_CHUNK_SECONDS), self.frames_for(DECODE_CONTEXT_SECONDS)
        wavs = [self.codec.decode_chunked(self.stats.denormalise(item.float().cpu().numpy(), self.normalisation),
                                          chunk, context) for item in latents]
        length = min(len(w) for w in wavs)
        return np.stack([w[:length] for w in wavs])

    def generate_music(self, descriptions: Sequence[str | None], chords: Any = None, drums_wav: Any = None,
                       drums_sample_rate: int | None = None, melody_salience_matrix: Any = None,
                       progress: bool = False, return_latents: bool = False,
                       noise: torch.Tensor | None = None, audio: Any = None, audio_sample_rate: int | None = None,
                       continue_after: float | None = None, regenerate: Sequence[Sequence[float]] | None = None,
                       spans: Any = None) -> np.ndarray | tuple[np.ndarray, torch.Tensor]:
        """Generate ``len(descriptions)`` pieces of ``params.seconds`` with any subset of controls.

        chords: ``[(label, start_s), ...]`` for all items, or one such list per item (None = dropped).
        drums_wav: (N,) drum stem for all, or one per item, at ``drums_sample_rate``.
        melody_salience_matrix: (53, T) or (T, 53) at the model frame rate, for all or per item.
        noise: (B, T, D) starting noise of the first window instead of the seeded draw.
        audio (N,) at ``audio_sample_rate``, one for all or one per item, with ``continue_after`` (s)
        or ``regenerate`` ([[start, end], ...] s): edit a user's clip (:meth:`edit_of`).
        spans: where each temporal control applies, e.g. ``{"chords": [[0, 8]]}`` (:meth:`build_conditions`).
        Returns (B, N) float32 audio at :attr:`sample_rate` (and the latents if asked).
        """
        n_frames = self.frames_for(self.params.seconds)
        cond = self.build_conditions(list(descriptions), n_frames, chords, drums_wav, drums_sample_rate,
                                     melody_salience_matrix, spans)
        generator = torch.Generator().manual_seed(self.params.seed)
        edit = None if audio is None else self.edit_of(audio, audio_sample_rate, n_frames, len(descriptions),
                                                        continue_after, regenerate)
        latents = self.sample_latents(cond, n_frames, generator, progress, noise=noise, edit=edit)
        audio = self.decode(latents)
        return (audio, latents) if return_latents else audio


def _fit_samples(wav: np.ndarray, length: int) -> np.ndarray:
    """(N,) trimmed or zero-padded to ``length`` samples."""
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, len(wav))] = wav[:length]
    return out


def _guided_at(t: float, start: float, stop: float) -> bool:
    """Whether flow time t gets the guidance mix; an interval reaching 0 or 1 extends past it, since
    adaptive solvers try stages beyond the end time (torchdiffeq's dopri5 steps over t1 and interpolates)."""
    return (start <= t <= stop) or (t > 1.0 and stop >= 1.0) or (t < 0.0 and start <= 0.0)
