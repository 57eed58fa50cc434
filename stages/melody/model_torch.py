"""PyTorch port of the DeepSalience network, loading the original Keras weight files.

Layout: the Keras model is channels-last with input (batch, 360 freq, T time, 6); here tensors are
(batch, 6, 360, T), so a Keras kernel (kh, kw, in, out) becomes (out, in, kh, kw) and the freq/time
axes keep their order. Keras `same` padding puts the extra row of an even kernel *below*: the
70-tall kernel pads 34 bins above and 35 below, so that layer pads explicitly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stages.melody.constants import BN_EPSILON, CONV_LAYERS, N_BINS, N_INPUT_CHANNELS
from stages.melody.weights import DeepSalienceWeights


def same_padding(kernel: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's `same` for stride 1: the odd extra goes after."""
    total = kernel - 1
    return total // 2, total - total // 2


class DeepSalienceNet(nn.Module):
    """BN -> [Conv -> act -> BN] x 5 -> Conv 1x1 sigmoid; input (B, 6, 360, T) -> output (B, 360, T)."""

    def __init__(self) -> None:
        super().__init__()
        fan_in = N_INPUT_CHANNELS
        self.norms = nn.ModuleList()
        self.convs = nn.ModuleList()
        self.pads: list[tuple[int, int, int, int]] = []
        for _, filters, (kernel_freq, kernel_time), _ in CONV_LAYERS:
            self.norms.append(nn.BatchNorm2d(fan_in, eps=BN_EPSILON))
            self.convs.append(nn.Conv2d(fan_in, filters, (kernel_freq, kernel_time)))
            top, bottom = same_padding(kernel_freq)
            left, right = same_padding(kernel_time)
            self.pads.append((left, right, top, bottom))  # F.pad order: last axis (time) first
            fan_in = filters
        self.activations = [act for *_, act in CONV_LAYERS]
        self.eval()

    def load_keras_weights(self, weights: DeepSalienceWeights) -> "DeepSalienceNet":
        with torch.no_grad():
            for norm, conv, bn_w, conv_w in zip(self.norms, self.convs, weights.batch_norms, weights.convs):
                norm.weight.copy_(torch.from_numpy(bn_w.gamma))
                norm.bias.copy_(torch.from_numpy(bn_w.beta))
                norm.running_mean.copy_(torch.from_numpy(bn_w.moving_mean))
                norm.running_var.copy_(torch.from_numpy(bn_w.moving_variance))
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(conv_w.kernel.transpose(3, 2, 0, 1))))
                conv.bias.copy_(torch.from_numpy(conv_w.bias))
        return self

    def forward(self, hcqt: torch.Tensor) -> torch.Tensor:
        x = hcqt
        for norm, conv, pad, activation in zip(self.norms, self.convs, self.pads, self.activations):
            # BN first, then zero padding: Keras pads the normalised tensor with zeros.
            x = conv(nn.functional.pad(norm(x), pad))
            x = torch.relu(x) if activation == "relu" else torch.sigmoid(x)
        return x[:, 0]


class TorchSalienceModel:
    """The PyTorch backend: ``predict((B, 6, 360, L) float32) -> (B, 360, L) float32``."""

    backend = "torch"

    def __init__(self, weights: DeepSalienceWeights, threads: int, device: str = "cpu") -> None:
        if threads > 0 and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if device.startswith("cuda"):
            # TF32 convolutions would lose parity with the float32 reference (~1e-3 differences).
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.name = weights.name
        self.device = torch.device(device)
        self.net = DeepSalienceNet().load_keras_weights(weights).to(self.device)

    def predict(self, hcqt: np.ndarray) -> np.ndarray:
        if hcqt.ndim != 4 or hcqt.shape[1:3] != (N_INPUT_CHANNELS, N_BINS):
            raise ValueError(f"expected HCQT batch (B, {N_INPUT_CHANNELS}, {N_BINS}, L), got {hcqt.shape}")
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(hcqt, dtype=np.float32)).to(self.device)
            return self.net(x).cpu().numpy()
