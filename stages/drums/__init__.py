"""Drums stage: drum-stem separation (Demucs, or offline HPSS) and a drum onset envelope."""

from stages.drums.config import DemucsConfig, DrumsConfig, HpssConfig, OnsetConfig
from stages.drums.extractor import DrumsExtractor

__all__ = ["DemucsConfig", "DrumsConfig", "DrumsExtractor", "HpssConfig", "OnsetConfig"]
