"""Guidance shaping (model/flow/guidance.py): projected guidance and rescale, as properties."""

from __future__ import annotations

import pytest
import torch

from model.config import GenerateConfig
from model.flow.guidance import shape_guidance
from model.flow.path import CondOTPath
from model.network.conditioners import keep_mask_from_flags
from model.sampling.sample import MusicGenerator

from tests.test_model_math import TINY, random_conditions, randomised_network

PATH = CondOTPath(sigma_min=1e-5)


def _state(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 10, 5, generator=g)
    t = torch.tensor([0.1, 0.3, 0.45])
    conditional = torch.randn(3, 10, 5, generator=g)
    guided = conditional + 2.0 * torch.randn(3, 10, 5, generator=g) + 0.7 * PATH.data_estimate(x, conditional, t)
    return x, t, conditional, guided


def test_data_estimate_inverts_and_finds_the_data_from_the_true_velocity():
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(2, 8, 3, generator=g), torch.randn(2, 8, 3, generator=g)
    t = torch.tensor([0.2, 0.9])
    x_t = PATH.sample(x0, x1, t)
    assert torch.allclose(PATH.data_estimate(x_t, PATH.target_velocity(x0, x1), t), x1, atol=1e-5)
    v = torch.randn(2, 8, 3, generator=g)
    assert torch.allclose(PATH.velocity_to(x_t, PATH.data_estimate(x_t, v, t), t), v, atol=1e-5)


def test_defaults_leave_the_guided_velocity_untouched():
    x, t, conditional, guided = _state()
    assert shape_guidance(PATH, x, t, conditional, guided) is guided


def test_no_parallel_part_leaves_the_change_orthogonal_to_the_conditional_estimate():
    x, t, conditional, guided = _state()
    x1_c = PATH.data_estimate(x, conditional, t)
    plain_change = PATH.data_estimate(x, guided, t) - x1_c
    assert ((plain_change * x1_c).sum(dim=(1, 2)).abs() > 1.0).all()  # the plain mix has a parallel part
    change = PATH.data_estimate(x, shape_guidance(PATH, x, t, conditional, guided, parallel=0.0), t) - x1_c
    assert torch.allclose((change * x1_c).sum(dim=(1, 2)), torch.zeros(3), atol=1e-3)
    # the orthogonal part is what the plain mix had
    orth = plain_change - (plain_change * x1_c).sum(dim=(1, 2), keepdim=True) / (x1_c ** 2).sum(dim=(1, 2), keepdim=True) * x1_c
    assert torch.allclose(change, orth, atol=1e-4)
    # parallel is linear: halfway between plain and orthogonal
    half = PATH.data_estimate(x, shape_guidance(PATH, x, t, conditional, guided, parallel=0.5), t) - x1_c
    assert torch.allclose(half, 0.5 * (change + plain_change), atol=1e-4)


def test_full_rescale_gives_the_conditional_spread_per_example():
    x, t, conditional, guided = _state()
    x1_c = PATH.data_estimate(x, conditional, t)
    out = PATH.data_estimate(x, shape_guidance(PATH, x, t, conditional, guided, rescale=1.0), t)
    assert torch.allclose(out.std(dim=(1, 2)), x1_c.std(dim=(1, 2)), rtol=1e-4)
    plain = PATH.data_estimate(x, guided, t)
    assert not torch.allclose(plain.std(dim=(1, 2)), x1_c.std(dim=(1, 2)), rtol=1e-2)
    blended = PATH.data_estimate(x, shape_guidance(PATH, x, t, conditional, guided, rescale=0.5), t)
    assert torch.allclose(blended, 0.5 * (out + plain), atol=1e-4)


def test_generator_applies_the_shaping_to_its_guidance_mix():
    net = randomised_network()
    generator = MusicGenerator.__new__(MusicGenerator)
    generator.model, generator.path = net, PATH
    cond = random_conditions(2, 6).with_keep(keep_mask_from_flags(1, chords=True, drums=True, text=True)[0])
    x, t = torch.randn(2, 6, TINY.latent_dim, generator=torch.Generator().manual_seed(3)), torch.tensor(0.25)
    generator.params = GenerateConfig()
    plain = generator.guided_velocity(cond)(t, x)
    generator.params = GenerateConfig(guidance_parallel=0.0)
    with torch.no_grad():
        shaped = generator.guided_velocity(cond)(t, x)
        conditional = net(x, t.expand(2), cond)
    expected = shape_guidance(PATH, x, t.expand(2), conditional, plain, parallel=0.0)
    assert torch.allclose(shaped, expected, atol=1e-5)
    assert not torch.allclose(shaped, plain, atol=1e-3)
    # outside the guidance interval the plain conditional velocity is left alone
    with torch.no_grad():
        assert torch.allclose(generator.guided_velocity(cond)(torch.tensor(0.75), x), net(x, torch.full((2,), 0.75), cond))
    with pytest.raises(ValueError, match="guidance_rescale"):
        GenerateConfig(guidance_rescale=1.5)
