"""Text encoders: the offline MiniLM default and T5 (a tiny random-init model of the real class)."""

from __future__ import annotations

import pytest
import torch

from model.config import TextConfig
from model.network.text import TextEncoder, TextEncoderError


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder(TextConfig())


def test_minilm_token_embeddings_and_validity(minilm):
    tokens, valid = minilm.encode(["a calm piano piece", None, "loud drums"])
    assert minilm.dim == 384 and tokens.shape[0] == 3 and tokens.shape[2] == 384
    assert valid[0].sum() > 2 and valid[1].sum() == 0  # no text: no valid token
    assert torch.all(tokens[1] == 0)
    again, _ = minilm.encode(["loud drums"])
    n = int(valid[2].sum())
    assert torch.equal(again[0, :n], tokens[2, :n])  # cached, and independent of the batch it came in


def test_embedding_of_a_text_does_not_depend_on_its_batch(minilm):
    fresh = TextEncoder(TextConfig())
    alone, _ = fresh.encode(["jazz trio with brushes"])
    _, _ = minilm.encode(["a much longer description that pads every other text in the batch", "x"])
    together, valid = minilm.encode(["jazz trio with brushes", "a much longer description that pads every other"])
    n = alone.shape[1]
    assert torch.equal(alone[0], together[0, :n])


def test_t5_from_a_local_folder(tmp_path):
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    from model.network.text import resolve_source

    tokenizer = AutoTokenizer.from_pretrained(resolve_source(TextConfig()))
    torch.manual_seed(0)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    T5EncoderModel(config).save_pretrained(tmp_path / "t5")
    tokenizer.save_pretrained(tmp_path / "t5")
    encoder = TextEncoder(TextConfig(encoder="t5", name_or_path=str(tmp_path / "t5")))
    tokens, valid = encoder.encode(["bright synth pop", ""])
    assert encoder.dim == 16 and tokens.shape[-1] == 16 and valid[0].any() and not valid[1].any()
    assert torch.isfinite(tokens).all()


def test_misconfigured_encoders_are_clear_errors(tmp_path):
    with pytest.raises(TextEncoderError, match="name_or_path is empty"):
        TextEncoder(TextConfig(encoder="t5"))
    with pytest.raises(TextEncoderError, match="does not exist"):
        TextEncoder(TextConfig(encoder="t5", name_or_path=str(tmp_path / "missing")))
    with pytest.raises(TextEncoderError, match="unknown encoder"):
        TextEncoder(TextConfig(encoder="clap"))
