"""musicnn (MSD) embeddings: a pretrained audio embedding for a Fréchet distance.

musicnn (Pons & Serra 2019, PyPI ``musicnn==0.1.0``, ISC) is a music auto-tagging CNN trained on
real recordings of the Million Song Dataset (50 tags). Its wheel ships TensorFlow-1 checkpoints;
its own code builds a TF1 graph (``tf.compat.v1.layers``) that TensorFlow 2.16+ no longer has, so
this module never imports it: the ``MSD_musicnn`` variables are read once with TensorFlow's
checkpoint reader (a binary tensor bundle, no pickled code), converted to a PyTorch state dict,
cached (``~/.cache/chordflow/musicnn/MSD_musicnn-<sha of the checkpoint>.pt``, written atomically,
read back with ``weights_only=True``), and the forward pass is reimplemented below.

Input, as musicnn computes it: mono 16 kHz audio, a power mel spectrogram (librosa, n_fft 512, hop
256, 96 slaney mels, centred frames, zero padding), rounded to float16 (musicnn stores it so) and
compressed with ``log10(10000 x + 1)`` in float32 (what musicnn's numpy < 1.17 did; numpy 2 would
compute it in float16 and overflow to inf on loud audio). A patch is 187 frames (3 s, the length the
model was trained on); patches start every ``hop_s`` (floored to whole frames: 1.0 s -> 62 frames);
a tail shorter than a hop is left out, as musicnn does. A clip of at least ``MIN_CLIP_S`` but shorter
than 3 s gives one patch, its frames repeated until 187 (musicnn's training setting
``pad_short: repeat-pad``); a shorter clip is refused.

Network (batch norm in inference mode, epsilon 1e-3 as TF1's default): input batch norm; a front
end of "timbral" filters spanning 7 frames x 38 or 67 mel bands (204 each) and "temporal" filters
spanning 128, 64, 32 frames x 1 band (51 each), each ReLU -> batch norm -> max over frequency;
a mid end of three 1-D convolutions over time (64 filters, width 7; the 2nd and 3rd residual); the
front-end and mid-end maps concatenated to 561 + 3 x 64 = 753 channels per frame; a back end that
pools each channel over time (max and mean, interleaved per channel), batch norm, a 200-unit dense
layer (ReLU -> batch norm) and the 50-tag dense layer with a sigmoid.

Embedding layers (musicnn's extractor names them): ``penultimate`` (default, 200-d: the batch-normed
dense layer the tags are read from, the most tag-like summary of a patch), ``max_pool`` and
``mean_pool`` (753-d each: the time-pooled mid-end features before any tag training squeezes them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from model.evaluation.judges import JudgeIdentity, package_version
from model.plain_file import PlainFileError, read_plain_file
from pipeline.audio import convert_channels, resample
from pipeline.atomic import WriteError, atomic_path
from pipeline.config import ConfigError

PACKAGE = "musicnn"
MODEL_NAME = "MSD_musicnn"
INSTALL_HINT = "pip install --no-deps musicnn==0.1.0"
DEFAULT_CACHE_DIR = "~/.cache/chordflow/musicnn"
#: The checkpoint's tensor bundle inside ``musicnn/MSD_musicnn/`` (its prefix is the folder itself).
CHECKPOINT_FILES = (".index", ".data-00000-of-00001")

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
LOG_GAIN = 10000.0
FLOAT16_MAX = float(np.finfo(np.float16).max)
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1 at this rate and hop: the training length
PATCH_SECONDS = 3.0
MIN_CLIP_S = 1.0
BN_EPSILON = 1e-3

TIMBRAL_FILTERS, TIMBRAL_WIDTH, TIMBRAL_BANDS = 204, 7, (38, 67)
TEMPORAL_FILTERS, TEMPORAL_LENGTHS = 51, (128, 64, 32)
MIDEND_FILTERS, MIDEND_WIDTH, MIDEND_LAYERS = 64, 7, 3
FRONTEND_CHANNELS = len(TIMBRAL_BANDS) * TIMBRAL_FILTERS + len(TEMPORAL_LENGTHS) * TEMPORAL_FILTERS  # 561
FEATURE_CHANNELS = FRONTEND_CHANNELS + MIDEND_LAYERS * MIDEND_FILTERS  # 753
DENSE_UNITS = 200

#: The 50 Million Song Dataset tags, in the order of the model's outputs (musicnn's MSD label list).
MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist",
    "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy", "catchy", "funk",
    "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy")
LAYER_DIMENSIONS = {"penultimate": DENSE_UNITS, "max_pool": FEATURE_CHANNELS, "mean_pool": FEATURE_CHANNELS}


class MusicnnSetupError(RuntimeError):
    """The musicnn checkpoint cannot be found, read or converted; the message names the file and why."""


@dataclasses.dataclass(frozen=True)
class MusicnnConfig:
    """Which layer embeds a patch, how often a patch starts, the torch batch, the weight cache folder."""

    layer: str = "penultimate"
    hop_s: float = 1.0
    batch_size: int = 16
    cache_dir: str = DEFAULT_CACHE_DIR

    def __post_init__(self) -> None:
        if self.layer not in LAYER_DIMENSIONS:
            raise ConfigError(f"musicnn: layer must be one of {sorted(LAYER_DIMENSIONS)}, got {self.layer!r}")
        if not self.hop_s * SAMPLE_RATE >= HOP_LENGTH or self.batch_size < 1:
            raise ConfigError(f"musicnn: need hop_s >= {HOP_LENGTH / SAMPLE_RATE} s and batch_size >= 1, "
                              f"got {self}")

    @property
    def hop_frames(self) -> int:
        return int(self.hop_s * SAMPLE_RATE // HOP_LENGTH)

    @property
    def dimensions(self) -> int:
        return LAYER_DIMENSIONS[self.layer]


def log_mel(mono: np.ndarray) -> np.ndarray:
    """(n,) mono float32 audio at 16 kHz -> (1 + n // 256, 96) float32 musicnn input (see module doc)."""
    from pipeline.numba_cache import import_librosa

    librosa = import_librosa()
    with warnings.catch_warnings():  # clips shorter than n_fft: librosa warns and pads
        warnings.simplefilter("ignore", UserWarning)
        power = librosa.feature.melspectrogram(y=np.asarray(mono, dtype=np.float32), sr=SAMPLE_RATE, n_fft=N_FFT,
                                               hop_length=HOP_LENGTH, n_mels=N_MELS, center=True,
                                               pad_mode="constant").T
    rounded = np.minimum(power, FLOAT16_MAX).astype(np.float16).astype(np.float32)
    return np.log10(np.float32(LOG_GAIN) * rounded + np.float32(1.0))


def patches(frames: np.ndarray, hop_frames: int) -> np.ndarray:
    """(T, 96) log-mel -> (windows, 187, 96): 3 s patches every ``hop_frames``; a short input repeated."""
    if frames.shape[0] < PATCH_FRAMES:
        repeats = -(-PATCH_FRAMES // frames.shape[0])
        return np.tile(frames, (repeats, 1))[None, :PATCH_FRAMES]
    starts = range(0, frames.shape[0] - PATCH_FRAMES + 1, hop_frames)
    return np.stack([frames[s:s + PATCH_FRAMES] for s in starts])


class MusicnnNet(nn.Module):
    """MSD_musicnn in PyTorch: (B, 187, 96) log-mel patches -> the outputs named in :meth:`forward`."""

    def __init__(self) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPSILON)
        self.timbral = nn.ModuleList(nn.Conv2d(1, TIMBRAL_FILTERS, (TIMBRAL_WIDTH, b)) for b in TIMBRAL_BANDS)
        self.timbral_bn = nn.ModuleList(nn.BatchNorm2d(TIMBRAL_FILTERS, eps=BN_EPSILON) for _ in TIMBRAL_BANDS)
        self.temporal = nn.ModuleList(nn.Conv2d(1, TEMPORAL_FILTERS, (n, 1)) for n in TEMPORAL_LENGTHS)
        self.temporal_bn = nn.ModuleList(nn.BatchNorm2d(TEMPORAL_FILTERS, eps=BN_EPSILON) for _ in TEMPORAL_LENGTHS)
        widths = [FRONTEND_CHANNELS] + [MIDEND_FILTERS] * (MIDEND_LAYERS - 1)
        self.midend = nn.ModuleList(nn.Conv1d(c, MIDEND_FILTERS, MIDEND_WIDTH) for c in widths)
        self.midend_bn = nn.ModuleList(nn.BatchNorm1d(MIDEND_FILTERS, eps=BN_EPSILON) for _ in widths)
        self.pool_bn = nn.BatchNorm1d(2 * FEATURE_CHANNELS, eps=BN_EPSILON)
        self.dense = nn.Linear(2 * FEATURE_CHANNELS, DENSE_UNITS)
        self.dense_bn = nn.BatchNorm1d(DENSE_UNITS, eps=BN_EPSILON)
        self.tags = nn.Linear(DENSE_UNITS, len(MSD_TAGS))

    def forward(self, log_mel_patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 187, 96) -> taggram (B, 50), penultimate (B, 200), max_pool and mean_pool (B, 753)."""
        x = self.input_bn(log_mel_patches[:, None])  # (B, 1, time, mel)
        maps = []
        for conv, bn in zip(self.timbral, self.timbral_bn):  # 'valid' over mel, 'same' over time
            half = TIMBRAL_WIDTH // 2
            maps.append(bn(F.relu(conv(F.pad(x, (0, 0, half, half))))).amax(dim=3))
        for conv, bn, length in zip(self.temporal, self.temporal_bn, TEMPORAL_LENGTHS):
            before = (length - 1) // 2  # TF's 'same' puts the odd extra pad frame after
            maps.append(bn(F.relu(conv(F.pad(x, (0, 0, before, length - 1 - before))))).amax(dim=3))
        front = torch.cat(maps, dim=1)  # (B, 561, time)
        layers, h = [front], front
        for i, (conv, bn) in enumerate(zip(self.midend, self.midend_bn)):
            out = bn(F.relu(conv(F.pad(h, (MIDEND_WIDTH // 2, MIDEND_WIDTH // 2)))))
            h = out if i == 0 else out + h  # the 2nd and 3rd mid-end layers are residual
            layers.append(h)
        features = torch.cat(layers, dim=1)  # (B, 753, time)
        max_pool, mean_pool = features.amax(dim=2), features.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # max/mean interleaved per channel
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return {"taggram": torch.sigmoid(self.tags(penultimate)), "penultimate": penultimate,
                "max_pool": max_pool, "mean_pool": mean_pool}


def _bn_names(index: int) -> str:
    return "batch_normalization" + (f"_{index}" if index else "")


def _conv_names(index: int) -> str:
    return "conv2d" + (f"_{index}" if index else "")


def tf_variable_map() -> dict[str, tuple[str, str]]:
    """Torch parameter name -> (TF1 variable name, layout) for MSD_musicnn, in the graph's creation order."""
    found: dict[str, tuple[str, str]] = {}

    def bn(prefix: str, index: int) -> None:
        for torch_name, tf_name in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                                    ("running_var", "moving_variance")):
            found[f"{prefix}.{torch_name}"] = (f"{_bn_names(index)}/{tf_name}", "vector")

    def conv(prefix: str, index: int, layout: str) -> None:
        found[f"{prefix}.weight"] = (f"{_conv_names(index)}/kernel", layout)
        found[f"{prefix}.bias"] = (f"{_conv_names(index)}/bias", "vector")

    bn("input_bn", 0)
    front = ([("timbral", i) for i in range(len(TIMBRAL_BANDS))]
             + [("temporal", i) for i in range(len(TEMPORAL_LENGTHS))])
    for n, (kind, i) in enumerate(front):
        conv(f"{kind}.{i}", n, "conv2d")
        bn(f"{kind}_bn.{i}", n + 1)
    for i in range(MIDEND_LAYERS):
        conv(f"midend.{i}", len(front) + i, "conv1d")
        bn(f"midend_bn.{i}", len(front) + i + 1)
    bn("pool_bn", len(front) + MIDEND_LAYERS + 1)
    found["dense.weight"], found["dense.bias"] = ("dense/kernel", "dense"), ("dense/bias", "vector")
    bn("dense_bn", len(front) + MIDEND_LAYERS + 2)
    found["tags.weight"], found["tags.bias"] = ("dense_1/kernel", "dense"), ("dense_1/bias", "vector")
    return found


def _to_torch_layout(value: np.ndarray, layout: str) -> torch.Tensor:
    if layout == "conv2d":  # TF (kh, kw, in, out) -> torch (out, in, kh, kw)
        value = value.transpose(3, 2, 0, 1)
    elif layout == "conv1d":  # TF (width, channels, 1, out) over (time, channels) -> torch (out, channels, width)
        value = value[:, :, 0, :].transpose(2, 1, 0)
    elif layout == "dense":  # TF (in, out) -> torch (out, in)
        value = value.T
    return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))


def checkpoint_dir() -> Path:
    """The installed ``musicnn/MSD_musicnn`` folder, found without importing musicnn's code."""
    try:
        folder = Path(str(importlib.metadata.distribution(PACKAGE).locate_file(f"{PACKAGE}/{MODEL_NAME}")))
    except importlib.metadata.PackageNotFoundError:
        raise MusicnnSetupError(f"the package {PACKAGE!r}, which ships the {MODEL_NAME} checkpoint, is not "
                                f"installed ({INSTALL_HINT})") from None
    for name in CHECKPOINT_FILES:
        if not (folder / name).is_file():
            raise MusicnnSetupError(f"{folder / name}: {MODEL_NAME} checkpoint file missing "
                                    f"(reinstall: {INSTALL_HINT})")
    return folder


def convert_checkpoint(folder: Path) -> dict[str, torch.Tensor]:
    """The TF1 checkpoint in ``folder`` -> a :class:`MusicnnNet` state dict (checked name by name and shape)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's start-up chatter, unless asked for
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise MusicnnSetupError(f"{folder}: reading the {MODEL_NAME} checkpoint needs tensorflow ({exc})") from exc
    try:  # the prefix is the folder itself (files '.index', '.data-...'); its 'checkpoint' file points elsewhere
        reader = tf.compat.v1.train.NewCheckpointReader(str(folder) + "/")
    except Exception as exc:  # TF raises its own error types for unreadable bundles
        raise MusicnnSetupError(f"{folder}: cannot read the {MODEL_NAME} checkpoint ({exc})") from exc
    expected = MusicnnNet().state_dict()
    state: dict[str, torch.Tensor] = {}
    for name, (tf_name, layout) in tf_variable_map().items():
        if not reader.has_tensor(tf_name):
            raise MusicnnSetupError(f"{folder}: variable {tf_name} missing from the {MODEL_NAME} checkpoint")
        state[name] = _to_torch_layout(reader.get_tensor(tf_name), layout)
        if state[name].shape != expected[name].shape:
            raise MusicnnSetupError(f"{folder}: {tf_name} has shape {tuple(state[name].shape)}, "
                                    f"expected {tuple(expected[name].shape)} for {name}")
    for name, value in expected.items():  # batch-norm step counters, unused in inference
        state.setdefault(name, torch.zeros_like(value))
    return state


def _checkpoint_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in CHECKPOINT_FILES:
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


def load_weights(folder: Path, cache_dir: Path) -> dict[str, torch.Tensor]:
    """The converted weights, read from the cache when present and sound, else converted and cached."""
    cached = cache_dir / f"{MODEL_NAME}-{_checkpoint_digest(folder)}.pt"
    if cached.is_file():
        try:
            state = read_plain_file(cached)
            MusicnnNet().load_state_dict(state, strict=True)
            return state
        except (PlainFileError, RuntimeError, TypeError, AttributeError):
            pass  # damaged or foreign: convert again and replace it
    state = convert_checkpoint(folder)
    try:
        with atomic_path(cached) as tmp:
            torch.save(state, tmp)
    except WriteError as exc:  # a read-only home still gets the judge, converted each time
        warnings.warn(f"musicnn: weights not cached ({exc})", RuntimeWarning, stacklevel=2)
    return state


class MusicnnEmbedding:
    """musicnn MSD embeddings per 3 s patch, and the 50-tag taggram (see the module doc)."""

    def __init__(self, config: MusicnnConfig | None = None) -> None:
        self.config = config or MusicnnConfig()
        self._net: MusicnnNet | None = None

    @property
    def identity(self) -> JudgeIdentity:
        return JudgeIdentity(name="musicnn", package=PACKAGE, version=package_version(PACKAGE),
                             model=f"{MODEL_NAME} {self.config.layer} ({self.config.dimensions}-d), "
                                   f"{PATCH_SECONDS:g} s patches every {self.config.hop_s:g} s")

    @property
    def tags(self) -> tuple[str, ...]:
        return MSD_TAGS

    def setup(self) -> None:
        """Find, convert (first time) or read (cached) the weights; raises :class:`MusicnnSetupError`."""
        if self._net is not None:
            return
        state = load_weights(checkpoint_dir(), Path(self.config.cache_dir).expanduser())
        net = MusicnnNet()
        net.load_state_dict(state, strict=True)
        self._net = net.eval()

    def forward_patches(self, log_mel_patches: np.ndarray) -> dict[str, np.ndarray]:
        """(windows, 187, 96) log-mel patches -> every output of :meth:`MusicnnNet.forward`, as float32."""
        self.setup()
        assert self._net is not None
        if log_mel_patches.ndim != 3 or log_mel_patches.shape[0] == 0 or log_mel_patches.shape[2] != N_MELS:
            raise ValueError(f"musicnn: need (windows >= 1, time, {N_MELS}) patches, got {log_mel_patches.shape}")
        x = torch.from_numpy(np.ascontiguousarray(log_mel_patches, dtype=np.float32))
        chunks: list[dict[str, torch.Tensor]] = []
        with torch.inference_mode():
            for start in range(0, x.shape[0], self.config.batch_size):
                chunks.append(self._net(x[start:start + self.config.batch_size]))
        return {key: torch.cat([c[key] for c in chunks]).numpy() for key in chunks[0]}

    def analyse(self, samples: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        """(C, n) float32 audio at ``sr`` -> taggram (windows, 50), penultimate (windows, 200),
        max_pool and mean_pool (windows, 753); ValueError for a clip shorter than ``MIN_CLIP_S``."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 2 or samples.shape[0] < 1:
            raise ValueError(f"musicnn: need (channels, n) audio, got shape {samples.shape}")
        if samples.shape[1] < MIN_CLIP_S * sr:
            raise ValueError(f"musicnn: clip of {samples.shape[1] / sr:.3f} s is shorter than the "
                             f"{MIN_CLIP_S:g} s minimum (shorter than {PATCH_SECONDS:g} s is repeated up to it)")
        if not np.all(np.isfinite(samples)):
            raise ValueError("musicnn: audio contains NaN or infinite samples")
        mono = resample(convert_channels(samples, 1), sr, SAMPLE_RATE)[0]
        return self.forward_patches(patches(log_mel(mono), self.config.hop_frames))

    def embed(self, samples: np.ndarray, sr: int) -> np.ndarray:
        """(C, n) float32 audio at ``sr`` -> (windows, D) float32: the configured layer per 3 s patch."""
        return self.analyse(samples, sr)[self.config.layer]

    def taggram(self, samples: np.ndarray, sr: int) -> np.ndarray:
        """(C, n) float32 audio at ``sr`` -> (windows, 50) tag probabilities in :data:`MSD_TAGS` order."""
        return self.analyse(samples, sr)["taggram"]

    def top_tags(self, samples: np.ndarray, sr: int, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` tags with the highest mean probability over the clip's patches, best first."""
        mean = self.taggram(samples, sr).mean(axis=0)
        return [(MSD_TAGS[i], float(mean[i])) for i in np.argsort(-mean)[:k]]

    def describe(self) -> dict[str, Any]:
        """The judge's identity and settings, for a metrics file."""
        return {**self.identity.as_dict(), "layer": self.config.layer, "hop_s": self.config.hop_s,
                "dimensions": self.config.dimensions}
