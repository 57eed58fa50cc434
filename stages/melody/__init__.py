"""Melody stage: DeepSalience (Bittner et al., ISMIR 2017) salience maps on a Keras/TensorFlow
reference backend and a PyTorch port in parity, and JASCO's 53-semitone melody condition.

Heavy imports (torch, TensorFlow, librosa) happen inside the functions that need them.
"""

from stages.melody.config import MelodyConfig, MelodyEvalConfig
from stages.melody.extractor import MelodyExtractor

__all__ = ["MelodyConfig", "MelodyEvalConfig", "MelodyExtractor"]
