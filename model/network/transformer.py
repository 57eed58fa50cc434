"""The velocity network: a non-causal pre-norm transformer over latent frames.

Input per frame: the noisy latent concatenated with the temporal conditions (chords, drums,
melody and their mask bits); ``frames_per_token`` frames are stacked into one token, projected to
the model width. With ``condition_every_layer`` the stacked conditions are also projected and added
at the input of every later block, so a shallow model keeps them in view (bench/report/model_choices.md).
Each block: self-attention with rotary positions (relative, so pieces longer than the training crops work),
cross-attention to the text tokens, an MLP; the flow time t modulates every layer norm (adaptive
LayerNorm, zero-initialised gates so training starts from identity).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.network.conditioners import Conditions, TemporalConditioner, TextConditioner
from model.config import ModelConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) flow times in [0, 1] -> (B, dim) sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def rotary_tables(length: int, head_dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (length, head_dim/2) of rotary position embeddings."""
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., T, head_dim) queries and/or keys by position (cos/sin: (T, head_dim/2))."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    rotated = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return rotated.flatten(-2)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention of (B, H, T, head_dim) tensors.

    On the CPU, bfloat16 inputs (autocast training) are attended in float32: torch's CPU flash
    attention backward is ~4x slower in bf16 than in fp32 at these sizes (bench/report/train_speed.md)."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        with torch.autocast("cpu", enabled=False):  # else autocast casts the inputs back to bf16
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class Block(nn.Module):
    """Pre-norm self-attention + cross-attention + MLP, each gated by the time embedding."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm_self = nn.LayerNorm(dim, elementwise_affine=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.self_out = nn.Linear(dim, dim)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_q = nn.Linear(dim, dim)
        self.cross_kv = nn.Linear(dim, 2 * dim)
        self.cross_out = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim, elementwise_affine=False)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        # shift/scale/gate for self-attention and MLP, from the time embedding
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        batch, heads, length, head_dim = x.shape
        return x.transpose(1, 2).reshape(batch, length, heads * head_dim)

    def forward(self, x: torch.Tensor, time: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                text: torch.Tensor, text_attendable: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(time).unsqueeze(1).chunk(6, dim=-1)
        h = self.norm_self(x) * (1 + scale1) + shift1
        batch, length, dim = h.shape
        # (3, B, H, T, head_dim) views of the packed projection; q and k rotated in one pass (the same
        # per-element ops as rotating each, with half the kernel launches forward and backward)
        qkv = self.qkv(h).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(qkv[:2], *rope).unbind(0)
        v = qkv[2]
        x = x + gate1 * self.self_out(self._merge(attention(q, k, v)))

        q = self._heads(self.cross_q(self.norm_cross(x)))
        k, v = (self._heads(part) for part in self.cross_kv(text).chunk(2, dim=-1))
        mask = text_attendable[:, None, None, :]
        x = x + self.cross_out(self._merge(attention(q, k, v, mask)))

        h = self.norm_mlp(x) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)


class FlowTransformer(nn.Module):
    """v_theta(x_t, t, conditions): (B, T, latent_dim) -> (B, T, latent_dim)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        k = config.frames_per_token
        self.temporal = TemporalConditioner(config)
        self.text = TextConditioner(config)
        self.input_projection = nn.Linear(k * (config.latent_dim + self.temporal.out_dim), config.dim)
        self.time_mlp = nn.Sequential(nn.Linear(config.dim, config.dim), nn.SiLU(), nn.Linear(config.dim, config.dim))
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.mlp_ratio) for _ in range(config.layers))
        # Optional: the conditions again at the input of every later block (zero-initialised, so
        # training starts from the JASCO layout and learns how much each depth needs them).
        self.block_conditions = nn.ModuleList(
            nn.Linear(k * self.temporal.out_dim, config.dim) for _ in range(config.layers - 1)
        ) if config.condition_every_layer else nn.ModuleList()
        for layer in self.block_conditions:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.final_norm = nn.LayerNorm(config.dim, elementwise_affine=False)
        self.final_modulation = nn.Linear(config.dim, 2 * config.dim)
        self.output_projection = nn.Linear(config.dim, k * config.latent_dim)
        # Optional: velocity += a(t) * x_t per (stacked frame, channel). For what the token width
        # cannot carry, the best velocity is this affine map of x_t (exact for Gaussian data);
        # without it that part of the starting noise is never removed. Zero-initialised.
        self.channel_skip = nn.Linear(config.dim, k * config.latent_dim) if config.channel_skip else None
        for layer in (self.final_modulation, self.output_projection, self.channel_skip):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Conditions) -> torch.Tensor:
        batch, frames, latent_dim = x.shape
        k = self.config.frames_per_token
        features = torch.cat([x, self.temporal(cond).to(x.dtype)], dim=-1)
        pad = (-frames) % k  # stack k frames per token; pad the tail and crop it again at the end
        if pad:
            features = F.pad(features, (0, 0, 0, pad))
        features = features.reshape(batch, (frames + pad) // k, k, -1)
        tokens = self.input_projection(features.flatten(2))
        # per token: the k frames' condition channels (latent channels dropped), (B, T/k, k * C_cond)
        condition_tokens = features[..., latent_dim:].flatten(2) if len(self.block_conditions) else None
        time = self.time_mlp(timestep_embedding(t.expand(batch) if t.dim() == 0 else t, self.config.dim).to(x.dtype))
        rope = rotary_tables(tokens.shape[1], self.config.dim // self.config.heads, x.device)
        text, attendable = self.text(cond)
        text = text.to(x.dtype)
        for index, block in enumerate(self.blocks):
            if index and condition_tokens is not None:
                tokens = tokens + self.block_conditions[index - 1](condition_tokens)
            tokens = block(tokens, time, rope, text, attendable)
        shift, scale = self.final_modulation(time).unsqueeze(1).chunk(2, dim=-1)
        out = self.output_projection(self.final_norm(tokens) * (1 + scale) + shift)
        if self.channel_skip is not None:  # (B, 1, k * D) scales of the stacked frames' x_t
            out = out + self.channel_skip(time).unsqueeze(1) * features[..., :latent_dim].flatten(2)
        return out.reshape(batch, frames + pad, latent_dim)[:, :frames]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
