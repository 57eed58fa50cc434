"""Controls over part of the timeline: a frame outside a control's spans sees exactly a dropped control."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from model.config import ModelConfig
from model.network.conditioners import Conditions, TemporalConditioner
from model.network.jasco import JascoFlowModel
from model.sampling.editing import EditError, span_frames
from music.conditions import CONDITION_NAMES, TEMPORAL_CONDITIONS
from test_model_math import TINY, random_conditions

JASCO_TINY = ModelConfig(architecture="jasco", latent_dim=6, drum_dim=3, text_dim=5, dim=16, layers=1, heads=2,
                         chord_embed_dim=4, drum_embed_dim=2, melody_embed_dim=4, frames_per_token=1,
                         drum_pool_frames=3)
FRAMES = 12


def with_spans(cond: Conditions, name: str, covered: slice) -> Conditions:
    frames = torch.ones(cond.batch_size, cond.chords.shape[1], len(TEMPORAL_CONDITIONS), dtype=torch.bool)
    frames[:, :, TEMPORAL_CONDITIONS.index(name)] = False
    frames[:, covered, TEMPORAL_CONDITIONS.index(name)] = True
    return replace(cond, frames=frames)


def dropped(cond: Conditions, name: str) -> Conditions:
    keep = cond.keep.clone()
    keep[:, CONDITION_NAMES.index(name)] = False
    return cond.with_keep(keep)


@pytest.mark.parametrize("name", TEMPORAL_CONDITIONS)
def test_chordflow_conditioner_frames_outside_spans_equal_the_dropped_control(name):
    torch.manual_seed(0)
    conditioner = TemporalConditioner(TINY)
    cond = random_conditions(2, FRAMES, TINY)
    partial = conditioner(with_spans(cond, name, slice(0, 5)))
    assert torch.equal(partial[:, 5:], conditioner(dropped(cond, name))[:, 5:])
    assert torch.equal(partial[:, :5], conditioner(cond)[:, :5])
    assert torch.equal(conditioner(replace(cond, frames=None)), conditioner(cond))


@pytest.mark.parametrize("name, key", [("chords", "chords"), ("drums", "self_wav"), ("melody", "melody")])
def test_jasco_conditioners_frames_outside_spans_equal_the_dropped_control(name, key):
    torch.manual_seed(0)
    model = JascoFlowModel(JASCO_TINY)
    cond = random_conditions(2, FRAMES, JASCO_TINY)
    partial = model.condition_embeddings(with_spans(cond, name, slice(0, 6)))[key]
    assert torch.equal(partial[:, 6:], model.condition_embeddings(dropped(cond, name))[key][:, 6:])
    # inside: the given control (the span ends on a drum-blur group edge, 6 = 2 x 3 frames)
    assert torch.equal(partial[:, :6], model.condition_embeddings(cond)[key][:, :6])


def test_span_frames_and_their_errors():
    frames = span_frames([{"chords": [[0.0, 0.1]]}, None], 10, 50.0)
    assert frames.shape == (2, 10, 3)
    assert frames[0, :, 0].tolist() == [True] * 5 + [False] * 5 and frames[0, :, 1:].all() and frames[1].all()
    assert span_frames([None, None], 10, 50.0) is None
    with pytest.raises(EditError, match="not a temporal control"):
        span_frames([{"text": [[0, 1]]}], 10, 50.0)
    with pytest.raises(EditError, match="need 0 <= start < end"):
        span_frames([{"chords": [[1, 0]]}], 10, 50.0)


def test_guidance_keeps_the_spans_and_a_generation_uses_them(tmp_path):
    """Through the sampler (tiny JASCO fixture): the all-term rows carry the spans; the output
    of a chords-on-the-first-half request differs from whole-clip chords only after the span."""
    from jasco_fixture import Fixture, generator_for, require_fixture
    from model.sampling.jasco import guidance_batch, guidance_terms

    generator = generator_for(Fixture(require_fixture("tiny_cdm")), solver="euler", steps=2, seconds=2.0)
    cond = generator.build_conditions(["jazz"], 100, [("C", 0.0), ("G", 1.0)], spans={"chords": [[0.0, 1.0]]})
    stacked = guidance_batch(cond, guidance_terms(3.0, 1.0, True), True, None)
    assert stacked.frames is not None and stacked.frames[0, :50, 0].all() and not stacked.frames[0, 50:, 0].any()
    with torch.no_grad():
        embeddings = generator.model.condition_embeddings(cond)["chords"]
        null = generator.model.condition_provider.conditioners["chords"].emb.weight[generator.model.null_chord]
    assert torch.equal(embeddings[0, 50:], null.expand(50, -1))


def test_prompt_spans(tmp_path):
    from model.sampling.prompts import read_prompts

    lines = [{"id": "a", "chords": [["C", 0.0]], "spans": {"chords": [[0, 4]]}},
             {"id": "b", "spans": {"bass": [[0, 1]]}}, {"id": "c", "spans": {"chords": [[3, 1]]}}]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    prompts, rejects = read_prompts(path, 10.0)
    assert prompts[0].spans == {"chords": [[0.0, 4.0]]}
    assert "'bass' is not one of" in rejects[0]["reason"] and "0 <= start < end" in rejects[1]["reason"]


def test_training_span_dropout_draws_spans_only_when_asked():
    from model.network.conditioners import SPAN_FRACTION, sample_span_frames

    assert sample_span_frames(4, 100, 0.0, torch.Generator().manual_seed(0)) is None
    frames = sample_span_frames(2000, 100, 0.5, torch.Generator().manual_seed(0))
    limited = ~frames.all(dim=1)                                   # (B, 3): limited to a span
    assert 0.45 < limited.float().mean() < 0.55
    covered = frames.sum(dim=1)[limited].float() / 100
    assert covered.min() >= SPAN_FRACTION[0] - 0.01 and covered.max() <= SPAN_FRACTION[1] + 0.01
    runs = (frames[:, 1:] != frames[:, :-1]).sum(dim=1)[limited]   # one contiguous span: at most 2 edges
    assert runs.max() <= 2
