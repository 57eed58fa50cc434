"""JASCO's flow network, as AudioCraft's ``FlowMatchingModel`` computes it (the ``jasco`` preset).

Parameter names are AudioCraft's, so a released ``state_dict.bin`` loads into it key for key
(model/jasco/release.py); only the EnCodec copy that the release carries lives elsewhere (it is
the codec, stages/latents/encodec_jasco.py). Per frame, the noisy latent (B, T, 128) is
concatenated with the temporal conditions after their projections, in the fixed order
[latent | chords 16 | drums 2 | melody 16], mapped to ``dim`` by ``emb`` (no bias); sinusoidal
positions ([cos | sin]) are added once; pre-norm layers do self-attention, cross-attention to the
text and a GELU MLP (packed q/k/v, no biases, no key masks); ``out_norm`` and ``linear`` give the
velocity. The flow time enters only the cross-attention memory: text embedding + time embedding.

Dropped conditions follow JASCO's null forms: chords -> the null index (``chord_vocab_size``),
drums and melody -> zeros (the projection gives its bias), text -> zeros. The mask-free attention
over text padding is part of the model (a description's output depends on the batch's longest
text), as in AudioCraft.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.network.conditioners import Conditions

#: Width of the sinusoidal flow-time features and of the time MLP (4x); AudioCraft's defaults.
TIME_EMBEDDING_DIM = 128
TIME_MLP_RATIO = 4
#: Period of both sinusoidal embeddings (flow time and positions).
MAX_PERIOD = 10000.0
LAYER_NORM_EPS = 1e-5


def time_embedding(t: torch.Tensor, dim: int = TIME_EMBEDDING_DIM) -> torch.Tensor:
    """Flow times (any shape, N values; raw t in [0, 1]) -> (N, dim) features [sin | cos]."""
    half = dim // 2
    scale = math.log(MAX_PERIOD) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -scale).to(t.device)
    angles = t.flatten().float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def position_embedding(length: int, dim: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, length, dim) sinusoidal positions [cos | sin], phase pos / 10000^(i / (dim/2 - 1))."""
    half = dim // 2
    positions = torch.arange(length, device=device).view(1, -1, 1)
    exponent = torch.arange(half, device=device, dtype=dtype).view(1, 1, -1) / (half - 1)
    phase = positions / (torch.full([], MAX_PERIOD, device=device, dtype=dtype) ** exponent)
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


def temporal_blur(z: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, T, C) -> (B, T, C): the mean of each group of ``factor`` frames, repeated (reflect-padded tail)."""
    batch, frames, channels = z.shape
    if factor <= 1:
        return z
    if frames % factor:
        z = F.pad(z.transpose(1, 2), (0, factor - frames % factor), mode="reflect").transpose(1, 2)
    groups = z.reshape(batch, -1, factor, channels).sum(dim=2) / factor
    return groups.unsqueeze(2).repeat(1, 1, factor, 1).reshape(batch, -1, channels)[:, :frames]


def fit_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, T', C) trimmed or zero-padded to (B, frames, C)."""
    x = x[:, :frames]
    if x.shape[1] < frames:
        x = torch.cat([x, x.new_zeros(x.shape[0], frames - x.shape[1], x.shape[2])], dim=1)
    return x


class PackedAttention(nn.Module):
    """Multi-head attention with one packed ``in_proj_weight`` (rows [q; k; v]) and no biases."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.out_proj = nn.Linear(dim, dim, bias=False)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, dim) queries attending to ``memory`` (B, L, dim), or to themselves when None."""
        dim = self.in_proj_weight.shape[0] // 3
        source = x if memory is None else memory
        q = F.linear(x, self.in_proj_weight[:dim])
        k = F.linear(source, self.in_proj_weight[dim: 2 * dim])
        v = F.linear(source, self.in_proj_weight[2 * dim:])
        out = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))
        batch, _, length, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class JascoLayer(nn.Module):
    """Pre-norm: x += SA(norm1 x); x += CA(norm_cross x, memory); x += FF(norm2 x)."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.self_attn = PackedAttention(dim, heads)
        self.cross_attention = PackedAttention(dim, heads)
        self.linear1 = nn.Linear(dim, hidden, bias=False)
        self.linear2 = nn.Linear(hidden, dim, bias=False)
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.norm_cross = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x))
        x = x + self.cross_attention(self.norm_cross(x), memory)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class JascoTransformer(nn.Module):
    """The plain stack of layers (AudioCraft's ``UnetTransformer`` without skip connections)."""

    def __init__(self, dim: int, heads: int, layers: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(JascoLayer(dim, heads, hidden) for _ in range(layers))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = x + position_embedding(x.shape[1], x.shape[2], x.dtype, x.device)
        for layer in self.layers:
            x = layer(x, memory)
        return x


class Projection(nn.Module):
    """A conditioner's ``output_proj`` (kept in a module of its own for AudioCraft's key names)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.output_proj = nn.Linear(in_dim, out_dim)


class ChordEmbedding(nn.Module):
    def __init__(self, vocabulary: int, out_dim: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocabulary + 1, out_dim)  # + the null chord (dropped chords)


class ConditionProvider(nn.Module):
    """``condition_provider.conditioners.*``: the four conditioners' trainable parts."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        conditioners = {
            "self_wav": Projection(config.drum_dim, config.drum_embed_dim),
            "description": Projection(config.text_dim, config.dim),
            "chords": ChordEmbedding(config.chord_vocab_size, config.chord_embed_dim),
        }
        if config.melody_embed_dim:
            conditioners["melody"] = Projection(config.melody_bins, config.melody_embed_dim)
        self.conditioners = nn.ModuleDict(conditioners)


class JascoFlowModel(nn.Module):
    """v_theta(x_t, t, conditions): (B, T, latent_dim) -> (B, T, latent_dim), JASCO's computation."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.has_melody = config.melody_embed_dim > 0
        temporal = config.chord_embed_dim + config.drum_embed_dim + config.melody_embed_dim
        self.condition_provider = ConditionProvider(config)
        self.emb = nn.Linear(config.latent_dim + temporal, config.dim, bias=False)
        self.transformer = JascoTransformer(config.dim, config.heads, config.layers, int(config.mlp_ratio * config.dim))
        self.out_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.linear = nn.Linear(config.dim, config.latent_dim, bias=False)
        time_hidden = TIME_MLP_RATIO * TIME_EMBEDDING_DIM
        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(TIME_EMBEDDING_DIM, time_hidden), nn.Linear(time_hidden, time_hidden)])
        self.temb_proj = nn.Linear(time_hidden, config.dim)

    @property
    def null_chord(self) -> int:
        return self.config.chord_vocab_size

    def condition_embeddings(self, cond: Conditions) -> dict[str, torch.Tensor]:
        """The conditioners' outputs: chords (B,T,16), self_wav (B,T,2), melody (B,T,16), description (B,L,dim)."""
        blocks = self.condition_provider.conditioners
        kept = {name: cond.kept_frames(name) for name in ("chords", "drums", "melody")}   # (B, 1 or T)
        kept["text"] = cond.keep_of("text")
        chords = torch.where(kept["chords"], cond.chords.long(), torch.full_like(cond.chords.long(), self.null_chord))
        drums = cond.drums * cond.keep_of("drums")[:, None, None].to(cond.drums.dtype)
        projection = blocks["self_wav"].output_proj
        self_wav = projection(temporal_blur(drums, self.config.drum_pool_frames))
        if cond.frames is not None:  # outside its spans: the dropped form (zeros -> the bias), after the blur
            self_wav = torch.where(kept["drums"][..., None], self_wav, projection.bias.expand_as(self_wav))
        out = {"chords": blocks["chords"].emb(chords), "self_wav": self_wav}
        if self.has_melody:
            melody = cond.melody * kept["melody"][..., None].to(cond.melody.dtype)
            out["melody"] = blocks["melody"].output_proj(melody)
        text_mask = (cond.text_valid & kept["text"][:, None]).to(cond.text.dtype)
        out["description"] = blocks["description"].output_proj(cond.text) * text_mask[..., None]
        return out

    def forward_embeddings(self, x: torch.Tensor, t: torch.Tensor, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        """The network on precomputed conditioner outputs; t: (1,), (B,) or (B, 1, 1) flow times."""
        frames = x.shape[1]
        temporal = [fit_frames(embeddings[name], frames) for name in ("chords", "self_wav", "melody") if name in embeddings]
        hidden = self.emb(torch.cat([x] + [c.to(x.dtype) for c in temporal], dim=-1))
        temb = self.temb.dense[0](time_embedding(t))
        temb = self.temb.dense[1](temb * torch.sigmoid(temb))
        memory = embeddings["description"] + self.temb_proj(temb[:, None, :])
        return self.linear(self.out_norm(self.transformer(hidden, memory)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Conditions) -> torch.Tensor:
        return self.forward_embeddings(x, t, self.condition_embeddings(cond))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
