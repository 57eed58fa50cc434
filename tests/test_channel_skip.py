"""model.channel_skip: the velocity's per-channel affine term in x_t removes the noise that the
token width cannot carry (frames_per_token x latent_dim values stacked into dim-wide tokens)."""

from __future__ import annotations

import torch

from model.config import ModelConfig
from model.flow.path import CondOTPath
from model.flow.solver import solve
from model.network.transformer import FlowTransformer

from test_model_math import random_conditions

#: 2 frames x 24 channels = 48 values per token through an 8-wide transformer.
NARROW = dict(latent_dim=24, drum_dim=3, text_dim=5, dim=8, layers=1, heads=2, chord_embed_dim=4,
              melody_embed_dim=4, drum_embed_dim=4, frames_per_token=2)
DATA_STD = 0.1
FRAMES, BATCH = 8, 32


def sample_spread(channel_skip: bool, steps: int = 300) -> float:
    """Std of samples from a narrow network trained on N(0, DATA_STD^2) data (the target spread)."""
    config = ModelConfig(**NARROW, channel_skip=channel_skip)
    torch.manual_seed(0)
    net, path = FlowTransformer(config), CondOTPath()
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3)
    cond = random_conditions(BATCH, FRAMES, config)
    for _ in range(steps):
        x1 = DATA_STD * torch.randn(BATCH, FRAMES, config.latent_dim)
        x0, t = torch.randn_like(x1), torch.rand(BATCH)
        loss = path.loss(net(path.sample(x0, x1, t), t, cond), x0, x1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()
    with torch.no_grad():
        x0 = torch.randn(BATCH, FRAMES, config.latent_dim)
        x1 = solve(lambda t, x: net(x, t.expand(x.shape[0]), cond), x0, method="euler", steps=16).x1
    return float(x1.std())


def test_without_the_skip_the_noise_the_tokens_cannot_carry_stays():
    assert sample_spread(False) > 0.6  # 40 of 48 values per token keep their starting noise


def test_channel_skip_removes_it():
    assert sample_spread(True) < 0.25  # close to the data's 0.1
