"""The codec registry: backends by name, each imported only when chosen.

Names map to "module:Class" strings so that choosing one backend never imports another's
dependencies (transformers, encodec); the backends import only the base class (:mod:`codec`).
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from pipeline.config import load_config
from stages.latents.codec import Codec, CodecError


#: name -> "module:Class" of every built-in codec.
CODECS: dict[str, str] = {
    "logspec_griffinlim": "stages.latents.logspec:LogSpecGriffinLim",
    "encodec_32khz": "stages.latents.encodec_hf:Encodec32kHz",
    "jasco_encodec": "stages.latents.encodec_jasco:JascoEncodec",
    "encodec_24khz": "stages.latents.encodec_meta:Encodec24kHz",
}


def codec_class(name: str) -> type[Codec]:
    try:
        target = CODECS[name]
    except KeyError:
        raise CodecError(f"unknown codec {name!r}; available: {', '.join(sorted(CODECS))}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_codec(name: str, options: Mapping[str, Any] | Any | None = None) -> Codec:
    """Build backend ``name`` from its options (a mapping, or an instance of its config class)."""
    cls = codec_class(name)
    config = options if isinstance(options, cls.config_class) else load_config(cls.config_class, options, where=name)
    return cls(config)
