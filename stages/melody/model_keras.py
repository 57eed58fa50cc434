"""The reference backend: the original DeepSalience model definition in Keras 3 on TensorFlow.

TensorFlow is imported only here (it takes seconds and hundreds of MB), and only when this backend
is chosen. The weights come from :func:`stages.melody.weights.read_weights` and are set layer by
layer, because Keras 3 cannot map the legacy Keras 2.0.6 weights-only HDF5 layout by itself.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from stages.melody.constants import BN_EPSILON, CONV_LAYERS, N_BINS, N_INPUT_CHANNELS
from stages.melody.weights import DeepSalienceWeights

#: TensorFlow inter-op threads at most (DeepSalience is a chain of ops: more would idle).
MAX_INTER_OP_THREADS = 2


class TensorFlowThreadsError(RuntimeError):
    """TensorFlow is already initialised with another intra-op thread count than the one asked for."""


def import_keras(threads: int):
    """Import Keras on the TensorFlow backend with ``threads`` intra-op threads.

    TensorFlow's pools are fixed when it initialises (``pipeline.threads`` cannot change them) and
    its convolutions round differently at 1 and 2 intra-op threads (9.5e-7 on DeepSalience), so the
    count is set here and a process whose TensorFlow already runs at another count is refused.
    """
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                f"keras is already imported with the {keras.backend.backend()!r} backend; "
                "the DeepSalience Keras backend needs KERAS_BACKEND=tensorflow"
            )
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no oneDNN/CUDA banner on every worker
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        # inter-op threads only run independent ops side by side; each op's numerics are unchanged
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, MAX_INTER_OP_THREADS))
    except RuntimeError:  # TF already initialised in this process: its thread pools are fixed
        pass
    if tf.config.threading.get_intra_op_parallelism_threads() != threads:
        raise TensorFlowThreadsError(
            f"TensorFlow is already initialised in this process with "
            f"{tf.config.threading.get_intra_op_parallelism_threads() or 'all'} intra-op threads; the keras "
            f"backend needs {threads} (melody.threads) set before TensorFlow starts: run it in a fresh process")
    import keras

    return keras


def build_keras_model(weights: DeepSalienceWeights, threads: int = 1):
    """The original `model_def()` (channels-last input (batch, 360, T, 6)) with ``weights`` set."""
    keras = import_keras(threads)
    layers = keras.layers
    inputs = keras.Input(shape=(N_BINS, None, N_INPUT_CHANNELS))
    x = inputs
    for (name, filters, kernel, activation), bn_w, conv_w in zip(CONV_LAYERS, weights.batch_norms, weights.convs):
        norm = layers.BatchNormalization(epsilon=BN_EPSILON)
        conv = layers.Conv2D(filters, kernel, padding="same", activation=activation, name=name)
        x = conv(norm(x))
        norm.set_weights([bn_w.gamma, bn_w.beta, bn_w.moving_mean, bn_w.moving_variance])
        conv.set_weights([conv_w.kernel, conv_w.bias])
    outputs = layers.Lambda(lambda y: y[..., 0])(x)  # the original squeezes the channel axis
    return keras.Model(inputs, outputs, name=f"deepsalience_{weights.name}")


class KerasSalienceModel:
    """The Keras/TensorFlow backend: ``predict((B, 6, 360, L) float32) -> (B, 360, L) float32``."""

    backend = "keras"

    def __init__(self, weights: DeepSalienceWeights, threads: int) -> None:
        self.name = weights.name
        self.model = build_keras_model(weights, threads)

    def predict(self, hcqt: np.ndarray, lowest_bin: int = 0) -> np.ndarray:
        """(B, 6, 360, L) -> (B, 360 - lowest_bin, L): the whole map is computed, the bins below cut."""
        if hcqt.ndim != 4 or hcqt.shape[1:3] != (N_INPUT_CHANNELS, N_BINS):
            raise ValueError(f"expected HCQT batch (B, {N_INPUT_CHANNELS}, {N_BINS}, L), got {hcqt.shape}")
        channels_last = np.ascontiguousarray(hcqt.transpose(0, 2, 3, 1), dtype=np.float32)
        # Calling the model (not .predict) runs one graph call without Keras' batching loop.
        return np.asarray(self.model(channels_last, training=False))[:, lowest_bin:]
