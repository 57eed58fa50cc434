"""The training step's fast paths compute what the plain code computed (bench/report/train_speed.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import ModelParams, TrainConfig
from model.network.transformer import apply_rotary, rotary_tables
from model.training.train import CHECKPOINT_NAME, Trainer
from model_helpers import build_tiny_features, paths_for

TINY_MODEL = ModelParams(dim=32, layers=2, heads=2, frames_per_token=2, chord_embed_dim=8, melody_embed_dim=8,
                         drum_embed_dim=8)
TINY_TRAIN = TrainConfig(steps=6, batch_size=4, segment_seconds=1.0, warmup_steps=2, checkpoint_every=100,
                         eval_every=0, eval_batches=1, log_every=1, normalisation="per_dim", seed=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_features(tmp_path_factory.mktemp("tiny_features"))


def test_rotating_q_and_k_together_is_rotating_each_bit_for_bit():
    torch.manual_seed(0)
    qk = torch.randn(2, 3, 4, 10, 16)  # (q|k, B, H, T, head_dim)
    cos, sin = rotary_tables(10, 16, qk.device)
    together = apply_rotary(qk, cos, sin)
    assert torch.equal(together[0], apply_rotary(qk[0], cos, sin))
    assert torch.equal(together[1], apply_rotary(qk[1], cos, sin))


def loop_ema(trainer: Trainer) -> dict[str, torch.Tensor]:
    """The trainer's next EMA as the per-tensor loop computed it."""
    expected = {name: value.clone() for name, value in trainer.ema.items()}
    for name, value in trainer.model.state_dict().items():
        if value.dtype.is_floating_point:
            expected[name].lerp_(value, 1 - trainer.cfg.ema_decay)
    return expected


def test_the_foreach_ema_is_the_per_tensor_lerp_bit_for_bit(tiny, tmp_path):
    trainer = Trainer(paths_for(tiny, tmp_path), TINY_MODEL, TINY_TRAIN)
    trainer.run(progress=False, stop_at=2)
    for replace in (False, True):  # replaced as resuming and fine-tuning do: the cached lists follow it
        if replace:
            trainer.ema = {name: value.clone() for name, value in trainer.ema.items()}
        expected = loop_ema(trainer)
        trainer.update_ema()
        assert expected.keys() == trainer.ema.keys()
        for name, value in expected.items():
            assert torch.equal(trainer.ema[name], value), name


def test_a_checkpoint_of_the_per_tensor_adamw_resumes_on_the_fused_kernel(tiny, tmp_path):
    first = Trainer(paths_for(tiny, tmp_path), TINY_MODEL, TINY_TRAIN)
    assert all(group["fused"] for group in first.optimizer.param_groups)
    first.run(progress=False, stop_at=3)
    path = tmp_path / CHECKPOINT_NAME
    saved = load_checkpoint(path)
    for group in saved.training.optimizer["param_groups"]:  # as the trainer before the fused kernel saved it
        group.update(fused=None, foreach=None)
    save_checkpoint(path, saved.artifact, saved.training)
    resumed = Trainer(paths_for(tiny, tmp_path), TINY_MODEL, TINY_TRAIN)
    assert resumed.step == 3 and resumed.resumed_from
    assert all(group["fused"] for group in resumed.optimizer.param_groups)
    resumed.run(progress=False)
    straight = Trainer(paths_for(tiny, tmp_path / "straight"), TINY_MODEL, TINY_TRAIN)
    straight.run(progress=False)
    assert resumed.losses == straight.losses  # bit for bit


def test_bf16_autocast_on_the_cpu_trains_the_same_run_in_kind(tiny, tmp_path, monkeypatch):
    import dataclasses
    import model.device as device

    fp32 = Trainer(paths_for(tiny, tmp_path / "fp32"), TINY_MODEL, TINY_TRAIN)
    fp32.run(progress=False)
    monkeypatch.setattr(device, "cpu_has_native_bfloat16", lambda: True)  # no warning whatever the CPU
    bf16 = Trainer(paths_for(tiny, tmp_path / "bf16"), TINY_MODEL, dataclasses.replace(TINY_TRAIN, mixed_precision_cpu=True))
    assert bf16.bfloat16 and not fp32.bfloat16
    seen = []
    forward = bf16.model.forward
    autocast = lambda: (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
    monkeypatch.setattr(bf16.model, "forward", lambda *a, **k: seen.append(autocast()) or forward(*a, **k))
    bf16.run(progress=False)
    assert seen and set(seen) == {(True, torch.bfloat16)} and not torch.is_autocast_enabled("cpu")
    assert bf16.losses != fp32.losses  # bf16 matmuls really ran
    assert bf16.losses == pytest.approx(fp32.losses, rel=0.02)
    assert all(v.dtype == torch.float32 for v in bf16.model.state_dict().values() if v.is_floating_point())


def test_bf16_on_a_cpu_that_emulates_it_warns(monkeypatch):
    import model.device as device

    monkeypatch.setattr(device, "cpu_has_native_bfloat16", lambda: False)
    with pytest.warns(RuntimeWarning, match="emulated"):
        assert device.autocast_bfloat16(torch.device("cpu"), on_gpu=True, on_cpu=True)
    assert not device.autocast_bfloat16(torch.device("cpu"), on_gpu=True, on_cpu=False)
    assert device.autocast_bfloat16(torch.device("cuda"), on_gpu=True, on_cpu=False)


def test_attention_under_cpu_autocast_runs_in_float32_and_returns_bf16():
    import torch.nn.functional as F
    from model.network.transformer import attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 16) for _ in range(3))
    mask = torch.rand(2, 1, 1, 9) > 0.3
    assert torch.equal(attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    low = [x.bfloat16() for x in (q, k, v)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(*low, mask)
    assert out.dtype == torch.bfloat16
    exact = F.scaled_dot_product_attention(*(x.float() for x in low), attn_mask=mask)
    assert torch.equal(out, exact.bfloat16())  # attended in fp32, rounded once
