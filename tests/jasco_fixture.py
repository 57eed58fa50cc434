"""The released-checkpoint parity fixtures (../shared/reference/jasco_checkpoint) and helpers to run
chordflow on them exactly as AudioCraft ran them (CPU, float32, Demucs bypassed: the drums input
is the stem)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REFERENCE_DIR

FIXTURE_ROOT = REFERENCE_DIR / "jasco_checkpoint"
VARIANTS = ("tiny_cdm", "tiny_cd")
EULER_CASES = ("api_full_euler", "api_full_default_cfg_euler", "api_text_only_euler", "api_melody_no_chords_euler")
SEGMENT_FRAMES = 500
SAMPLE_RATE = 32000
NULL_CHORD = 194


def require_fixture(variant: str) -> Path:
    folder = FIXTURE_ROOT / variant
    if not (folder / "reference.npz").is_file():
        pytest.skip(f"JASCO parity fixture not available at {folder}")
    return folder


@dataclass
class Fixture:
    folder: Path

    @cached_property
    def ref(self) -> dict[str, np.ndarray]:
        with np.load(self.folder / "reference.npz") as data:
            return {k: data[k] for k in data.files}

    @cached_property
    def meta(self) -> dict:
        return json.loads((self.folder / "meta.json").read_text())

    def tensor(self, key: str) -> torch.Tensor:
        return torch.from_numpy(self.ref[key])

    def cases(self) -> list[str]:
        return [c for c in EULER_CASES if f"{c}/z1" in self.ref]

    def controls(self, case: str) -> dict:
        """The case's inputs, read from what AudioCraft tokenized (chords, drums, melody given or not)."""
        tok = f"{case}/tokenized/"
        has_chords = bool((self.ref[tok + "chords.frame_chords"][0] != NULL_CHORD).any())
        has_drums = bool(self.ref[tok + "self_wav.length"][0] > 1)
        melody_key = tok + "melody.melody"
        has_melody = melody_key in self.ref and bool(self.ref[melody_key][0].any())
        return {
            "descriptions": list(self.meta["descriptions"]),
            "chords": [tuple(c) for c in self.meta["chords"]] if has_chords else None,
            "drums_wav": self.ref["inputs/drums_wav"][0, 0] if has_drums else None,
            "drums_sample_rate": SAMPLE_RATE,
            "melody_salience_matrix": self.ref["inputs/melody"] if has_melody else None,
        }

    def cfg(self, case: str) -> tuple[float, float]:
        params = self.meta["cases"][case]["generation_params"]
        return params["cfg_coef_all"], params["cfg_coef_txt"]


def generator_for(fixture: Fixture, **settings):
    """``MusicGenerator.from_jasco`` on the fixture: its T5 stand-in, Demucs bypassed, CPU."""
    from model.sampling.sample import MusicGenerator

    return MusicGenerator.from_jasco(str(fixture.folder), t5=str(fixture.folder / "hf_t5"), device="cpu",
                                     separate_drums=False, **settings)


def use_reference_drum_tensors(generator, fixture: Fixture, case: str) -> None:
    """Give the network AudioCraft's drum condition tensors (``<case>/cond/self_wav/embeds``).

    The fixture's random codec has near-equal codebook norms and tiny encoder outputs, so the nearest
    codebook-0 code is a near-tie on ~10 % of frames (distance gaps ~1e-5) and flips with the BLAS's
    summation order: on this machine the drum tensors differ from AudioCraft's by 7e-5 whatever the
    batching, and AudioCraft's own two computations in the fixture disagree too (the codes behind
    ``cond/self_wav`` differ from ``inputs/drum_codes`` in one code of many 3-frame groups). The drum path itself is checked by test_drum_condition_matches_up_to_near_tie_codes;
    substituting its output isolates everything else, which must then match to the issue's tolerances."""
    model = generator.model
    inner = model.condition_embeddings
    reference = fixture.tensor(f"{case}/cond/self_wav/embeds")

    def embeddings(cond):
        out = inner(cond)
        if out["self_wav"].shape == reference.shape:
            out["self_wav"] = reference.to(out["self_wav"].dtype)
        return out

    model.condition_embeddings = embeddings


class StepRecorder:
    """Wraps a generator's guided velocity to keep every call's (t, v)."""

    def __init__(self, generator) -> None:
        self.calls: list[tuple[float, torch.Tensor]] = []
        inner = generator.guided_velocity

        def guided(cond):
            velocity = inner(cond)

            def recorded(t, x):
                out = velocity(t, x)
                self.calls.append((float(t), out.clone()))
                return out

            return recorded

        generator.guided_velocity = guided
