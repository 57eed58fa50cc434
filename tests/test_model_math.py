"""Mathematical properties of the model's pieces: path, solvers, guidance, condition masks."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from model.network.conditioners import Conditions, TemporalConditioner, keep_mask_from_flags, sample_keep_mask
from model.config import DropoutConfig, GenerateConfig, ModelConfig
from music.conditions import CONDITION_NAMES, TEMPORAL_CONDITIONS
from model.network.transformer import FlowTransformer
from model.flow.path import CondOTPath
from model.sampling.sample import MusicGenerator, guidance_weights
from model.flow.solver import SolverError, calls_per_run, solve

TINY = ModelConfig(latent_dim=6, drum_dim=3, text_dim=5, dim=32, layers=2, heads=2, chord_embed_dim=8,
                   melody_embed_dim=8, drum_embed_dim=8, frames_per_token=2)


def random_conditions(batch: int, frames: int, config: ModelConfig = TINY, seed: int = 0) -> Conditions:
    g = torch.Generator().manual_seed(seed)
    return Conditions(
        chords=torch.randint(0, config.chord_vocab_size, (batch, frames), generator=g),
        drums=torch.randn(batch, frames, config.drum_dim, generator=g),
        melody=torch.rand(batch, frames, config.melody_bins, generator=g),
        text=torch.randn(batch, 4, config.text_dim, generator=g),
        text_valid=torch.ones(batch, 4, dtype=torch.bool),
        keep=torch.ones(batch, len(CONDITION_NAMES), dtype=torch.bool))


def randomised_network(seed: int = 0, config: ModelConfig = TINY) -> FlowTransformer:
    """The network with every weight random (the zero-initialised gates would hide the conditions)."""
    torch.manual_seed(seed)
    net = FlowTransformer(config)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return net.eval()


# ---------------------------------------------------------------- path
def test_path_endpoints_and_target_velocity():
    path = CondOTPath(sigma_min=1e-5)
    generator = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(3, 7, 4, generator=generator), torch.randn(3, 7, 4, generator=generator)
    assert torch.allclose(path.sample(x0, x1, torch.zeros(3)), x0)
    # 1 - (1 - 1e-5) is 1.0013e-5 in float32: an absolute error of ~1e-8 |x0| where x1 is near 0
    assert torch.allclose(path.sample(x0, x1, torch.ones(3)), x1 + 1e-5 * x0, atol=1e-6)
    # the target is the time derivative of the path (it is linear in t)
    t, dt = torch.full((3,), 0.3), 1e-3
    numeric = (path.sample(x0, x1, t + dt) - path.sample(x0, x1, t - dt)) / (2 * dt)
    assert torch.allclose(numeric, path.target_velocity(x0, x1), atol=1e-3)
    assert torch.allclose(path.target_velocity(x0, x1), x1 - (1 - 1e-5) * x0)


def test_path_uses_per_example_times():
    path = CondOTPath(sigma_min=0.0)
    x0, x1 = torch.zeros(2, 3), torch.ones(2, 3)
    out = path.sample(x0, x1, torch.tensor([0.25, 0.75]))
    assert torch.allclose(out[0], torch.full((3,), 0.25)) and torch.allclose(out[1], torch.full((3,), 0.75))


def test_integrating_the_exact_velocity_reaches_the_data():
    path = CondOTPath()
    x0, x1 = torch.randn(2, 5), torch.randn(2, 5)
    v = path.target_velocity(x0, x1)
    for method in ("euler", "midpoint", "dopri5"):
        assert torch.allclose(solve(lambda t, x: v, x0, method=method, steps=3).x1, path.sample(x0, x1, torch.ones(2)),
                              atol=1e-5)


# ---------------------------------------------------------------- solvers
@pytest.mark.parametrize("method, tolerance", [("euler", 2e-2), ("midpoint", 5e-4), ("heun", 5e-4),
                                               ("heun2", 5e-4), ("rk4", 1e-7), ("dopri5", 1e-5)])
def test_solvers_on_exponential_decay(method, tolerance):
    result = solve(lambda t, x: -x, torch.ones(4), method=method, steps=16, atol=1e-7, rtol=1e-7)
    assert abs(result.x1[0].item() - math.exp(-1)) < tolerance
    expected_calls = calls_per_run(method, 16)
    if expected_calls is not None:
        assert result.function_evaluations == expected_calls


def test_euler_error_shrinks_linearly_and_midpoint_quadratically():
    def error(method, steps):
        return abs(solve(lambda t, x: -x, torch.ones(1, dtype=torch.float64), method=method, steps=steps).x1.item()
                   - math.exp(-1))
    assert 1.8 < error("euler", 8) / error("euler", 16) < 2.2
    assert 3.5 < error("midpoint", 8) / error("midpoint", 16) < 4.5


def test_time_dependent_ode_sees_time():
    # dx/dt = 2t from x=0 gives x(1) = 1 exactly for midpoint
    result = solve(lambda t, x: 2 * t * torch.ones_like(x), torch.zeros(2), method="midpoint", steps=4)
    assert torch.allclose(result.x1, torch.ones(2))


def test_unknown_solver_and_bad_steps():
    with pytest.raises(SolverError, match="unknown ODE solver"):
        solve(lambda t, x: x, torch.ones(1), method="leapfrog")
    with pytest.raises(SolverError, match="steps"):
        solve(lambda t, x: x, torch.ones(1), method="euler", steps=0)


# ---------------------------------------------------------------- conditions
def test_dropped_temporal_condition_is_ignored():
    conditioner = TemporalConditioner(TINY)
    a = random_conditions(2, 10, seed=1)
    b = random_conditions(2, 10, seed=2)
    for name in TEMPORAL_CONDITIONS:
        keep = keep_mask_from_flags(1, **{other: other != name for other in CONDITION_NAMES})[0]
        mixed = Conditions(**{**a.__dict__, name: getattr(b, name)}).with_keep(keep)
        assert torch.equal(conditioner(a.with_keep(keep)), conditioner(mixed)), name
        # given, the same swap changes the features
        assert not torch.equal(conditioner(a), conditioner(Conditions(**{**a.__dict__, name: getattr(b, name)})))


def test_mask_bits_distinguish_dropped_from_zero_valued():
    conditioner = TemporalConditioner(TINY)
    cond = random_conditions(1, 4)
    cond = Conditions(**{**cond.__dict__, "drums": torch.zeros_like(cond.drums)})
    given = conditioner(cond)
    dropped = conditioner(cond.with_keep(keep_mask_from_flags(1, chords=True, melody=True, text=True)[0]))
    assert not torch.equal(given, dropped)  # an all-zero drum input is not the same as no drums


def test_network_ignores_dropped_text_and_uses_given_text():
    net = randomised_network()
    x, t = torch.randn(2, 9, TINY.latent_dim), torch.rand(2)
    a, b = random_conditions(2, 9, seed=3), random_conditions(2, 9, seed=3)
    b = Conditions(**{**b.__dict__, "text": torch.randn_like(b.text)})
    no_text = keep_mask_from_flags(1, chords=True, drums=True, melody=True)[0]
    with torch.no_grad():
        assert torch.allclose(net(x, t, a.with_keep(no_text)), net(x, t, b.with_keep(no_text)), atol=1e-6)
        assert not torch.allclose(net(x, t, a), net(x, t, b), atol=1e-4)


def test_network_shapes_for_frame_counts_not_divisible_by_stacking():
    net = randomised_network()
    for frames in (1, 7, 10):
        out = net(torch.randn(3, frames, TINY.latent_dim), torch.rand(3), random_conditions(3, frames))
        assert out.shape == (3, frames, TINY.latent_dim)


def test_conditions_at_every_layer_start_as_the_input_only_layout_and_reach_later_blocks():
    every = dataclasses.replace(TINY, layers=3, condition_every_layer=True)
    x, t, cond = torch.randn(2, 8, TINY.latent_dim), torch.rand(2), random_conditions(2, 8, seed=4)
    torch.manual_seed(0)
    fresh_every = FlowTransformer(every)
    fresh_input_only = FlowTransformer(dataclasses.replace(every, condition_every_layer=False))
    missing, unexpected = fresh_input_only.load_state_dict(fresh_every.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith("block_conditions.") for k in unexpected)
    with torch.no_grad():  # zero-initialised extra projections: the same function as JASCO's layout
        assert torch.equal(fresh_every(x, t, cond), fresh_input_only(x, t, cond))

    other_chords = Conditions(**{**cond.__dict__, "chords": torch.roll(cond.chords, 3, dims=1)})
    condition_channels = slice(TINY.latent_dim, None)
    for config, reaches in ((every, True), (dataclasses.replace(every, condition_every_layer=False), False)):
        net = randomised_network(config=config)
        with torch.no_grad():
            # cut the input projection's condition columns: only the per-block path is left
            weight = net.input_projection.weight.view(config.dim, config.frames_per_token, -1)
            weight[:, :, condition_channels] = 0
            changed = not torch.allclose(net(x, t, cond), net(x, t, other_chords), atol=1e-5)
        assert changed == reaches


def test_keep_mask_helpers():
    mask = keep_mask_from_flags(3, chords=True, text=True)
    assert mask.tolist() == [[name in ("chords", "text") for name in CONDITION_NAMES]] * 3
    with pytest.raises(ValueError, match="unknown condition"):
        keep_mask_from_flags(1, harmony=True)
    g = torch.Generator().manual_seed(0)
    probabilities = {"chords": 0.5, "drums": 0.1, "melody": 0.0, "text": 0.3}
    keep = sample_keep_mask(20000, probabilities, 0.2, g)
    rates = 1 - keep.float().mean(0)
    # dropped = 1 - (1 - p)(1 - p_all)
    for name, rate in zip(CONDITION_NAMES, rates):
        assert abs(rate.item() - (1 - (1 - probabilities[name]) * 0.8)) < 0.015, name


def test_keep_mask_forces_the_guidance_branches_at_their_rates():
    probabilities = {name: 0.3 for name in CONDITION_NAMES}
    plain = sample_keep_mask(4000, probabilities, 0.15, torch.Generator().manual_seed(1))
    zero = sample_keep_mask(4000, probabilities, 0.15, torch.Generator().manual_seed(1),
                            {"text_chords": 0.0, "text_only": 0.0})
    assert torch.equal(plain, zero)  # forcing nothing leaves every draw as it was
    keep = sample_keep_mask(40000, probabilities, 0.15, torch.Generator().manual_seed(2),
                            {"text_chords": 0.2, "text_only": 0.1})
    patterns = keep.tolist()
    share = lambda kept: sum(row == [n in kept for n in CONDITION_NAMES] for row in patterns) / len(patterns)
    rest = 1 - 0.15 - 0.2 - 0.1  # examples with independent dropout
    assert abs(share(("chords", "text")) - (0.2 + rest * 0.7 ** 2 * 0.3 ** 2)) < 0.01
    assert abs(share(("text",)) - (0.1 + rest * 0.7 * 0.3 ** 3)) < 0.01
    assert abs(share(()) - (0.15 + rest * 0.3 ** 4)) < 0.01
    assert abs(share(CONDITION_NAMES) - rest * 0.7 ** 4) < 0.01
    with pytest.raises(ValueError, match="text_chords"):
        DropoutConfig(all=0.5, text_chords=0.4, text_only=0.2)


# ---------------------------------------------------------------- guidance
#: Each given condition adds its own power of ten to _RecordingModel's output.
BRANCH_CODE = {"chords": 1.0, "drums": 10.0, "melody": 100.0, "text": 1000.0}


class _RecordingModel(torch.nn.Module):
    """v = (sum of BRANCH_CODE over the branch's given conditions) so the mix can be checked; counts forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.batch_sizes = []

    def forward(self, x, t, cond):
        self.calls += 1
        self.batch_sizes.append(x.shape[0])
        code = cond.keep.float() @ torch.tensor([BRANCH_CODE[name] for name in CONDITION_NAMES])
        return x * 0 + code[:, None, None]


@pytest.mark.parametrize("w_all, w_txt", [(5.0, 0.0), (3.0, 1.5), (1.0, 0.0), (5.0, -2.0)])
def test_multi_source_guidance_formula_in_one_forward_pass(w_all, w_txt):
    generator = MusicGenerator.__new__(MusicGenerator)
    generator.model = _RecordingModel()
    generator.params = GenerateConfig(cfg_coef_all=w_all, cfg_coef_txt=w_txt, cfg_coef_drums_melody=None)
    cond = random_conditions(2, 6).with_keep(keep_mask_from_flags(1, chords=True, melody=True, text=True)[0])  # chords+melody+text
    velocity = generator.guided_velocity(cond)
    out = velocity(torch.tensor(0.5), torch.zeros(2, 6, TINY.latent_dim))
    v_all, v_txt, v_none = BRANCH_CODE["chords"] + BRANCH_CODE["melody"] + BRANCH_CODE["text"], BRANCH_CODE["text"], 0
    expected = w_all * v_all + w_txt * v_txt + (1 - w_all - w_txt) * v_none
    assert torch.allclose(out, torch.full_like(out, expected))
    assert generator.model.calls == 1  # every branch in one batched forward pass
    weights = guidance_weights(w_all, w_txt)
    # branches with weight 0 are not computed
    assert generator.model.batch_sizes == [2 * sum(1 for w in weights.values() if w != 0)]
    assert math.isclose(sum(weights.values()), 1.0)


@pytest.mark.parametrize("w_all, w_txt, w_rest", [(4.0, -1.0, 1.0), (3.0, 0.0, 0.0), (2.0, 0.5, 2.0)])
def test_drums_and_melody_guided_apart_from_the_chords(w_all, w_txt, w_rest):
    """v = v(none) + (a+t)[v(text)-v(none)] + a[v(text+chords)-v(text)] + r[v(all)-v(text+chords)]."""
    generator = MusicGenerator.__new__(MusicGenerator)
    generator.model = _RecordingModel()
    generator.params = GenerateConfig(cfg_coef_all=w_all, cfg_coef_txt=w_txt, cfg_coef_drums_melody=w_rest)
    cond = random_conditions(2, 6).with_keep(keep_mask_from_flags(1, chords=True, drums=True, melody=True,
                                                                  text=True)[0])
    out = generator.guided_velocity(cond)(torch.tensor(0.25), torch.zeros(2, 6, TINY.latent_dim))
    v_tc = BRANCH_CODE["chords"] + BRANCH_CODE["text"]
    v_all, v_txt = v_tc + BRANCH_CODE["drums"] + BRANCH_CODE["melody"], BRANCH_CODE["text"]
    expected = (w_all + w_txt) * v_txt + w_all * (v_tc - v_txt) + w_rest * (v_all - v_tc)
    assert torch.allclose(out, torch.full_like(out, expected))
    weights = guidance_weights(w_all, w_txt, w_rest)
    assert math.isclose(sum(weights.values()), 1.0)
    assert generator.model.batch_sizes == [2 * sum(1 for w in weights.values() if w != 0)]
    # chords alone: the text+chords branch is the full one, so nothing extra is computed
    generator.model = _RecordingModel()
    chords_only = cond.with_keep(keep_mask_from_flags(1, chords=True, text=True)[0])
    out = generator.guided_velocity(chords_only)(torch.tensor(0.25), torch.zeros(2, 6, TINY.latent_dim))
    assert torch.allclose(out, torch.full_like(out, w_all * v_tc + w_txt * v_txt))
    assert generator.model.batch_sizes == [2 * sum(1 for w in guidance_weights(w_all, w_txt).values() if w != 0)]


def test_guidance_applies_only_inside_its_time_interval():
    generator = MusicGenerator.__new__(MusicGenerator)
    generator.model = _RecordingModel()
    generator.params = GenerateConfig(cfg_coef_all=4.0, cfg_coef_txt=-1.0, cfg_coef_drums_melody=None,
                                      guidance_interval=(0.0, 0.5))
    cond = random_conditions(2, 6).with_keep(keep_mask_from_flags(1, chords=True, drums=True, text=True)[0])  # chords+drums+text
    velocity = generator.guided_velocity(cond)
    x = torch.zeros(2, 6, TINY.latent_dim)
    v_all, v_txt = BRANCH_CODE["chords"] + BRANCH_CODE["drums"] + BRANCH_CODE["text"], BRANCH_CODE["text"]
    inside = velocity(torch.tensor(0.25), x)
    assert torch.allclose(inside, torch.full_like(inside, 4.0 * v_all - 1.0 * v_txt))
    outside = velocity(torch.tensor(0.75), x)  # plain conditional velocity, a single branch
    assert torch.allclose(outside, torch.full_like(outside, float(v_all)))
    assert generator.model.batch_sizes == [2 * 3, 2]
    with pytest.raises(ValueError, match="guidance_interval"):
        GenerateConfig(guidance_interval=(0.6, 0.4))


def test_chord_templates_hold_pitch_classes_and_bass():
    from model.network.conditioners import chord_templates

    table = chord_templates(["N", "C", "Am7", "D/F#", "UNK"])
    assert table[0].sum() == 0 and table[4].sum() == 0
    assert torch.nonzero(table[1, :12]).flatten().tolist() == [0, 4, 7] and table[1, 12:].argmax() == 0
    assert torch.nonzero(table[2, :12]).flatten().tolist() == [0, 4, 7, 9] and table[2, 12:].argmax() == 9
    assert torch.nonzero(table[3, :12]).flatten().tolist() == [2, 6, 9] and table[3, 12:].argmax() == 6
