"""The network of a model config: chordflow's own or JASCO's, by ``ModelConfig.architecture``."""

from __future__ import annotations

from torch import nn

from model.config import ModelConfig
from model.network.jasco import JascoFlowModel
from model.network.transformer import FlowTransformer

NETWORKS: dict[str, type[nn.Module]] = {"chordflow": FlowTransformer, "jasco": JascoFlowModel}


def build_network(config: ModelConfig) -> nn.Module:
    """A freshly initialised velocity network ``v(x, t, conditions)`` for ``config``."""
    return NETWORKS[config.architecture](config)
