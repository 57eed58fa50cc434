"""PyTorch port of the DeepSalience network, loading the original Keras weight files.

Layout: the Keras model is channels-last with input (batch, 360 freq, T time, 6); here tensors are
(batch, 6, 360, T), so a Keras kernel (kh, kw, in, out) becomes (out, in, kh, kw) and the freq/time
axes keep their order. Keras `same` padding puts the extra row of an even kernel *after*: the
70-tall kernel sees 34 bins below and 35 above each output bin.

Speed (CPU): activations are kept channels-last (oneDNN's fast layout), BatchNorm runs in place as
a per-channel affine, and the 70 x 3 layer, whose tall, narrow kernel oneDNN handles poorly
(~20 GMAC/s per core), is computed as a product of spectra along frequency (a 400-point real FFT
turns the 70-tap correlation into one small complex matrix product per frequency bin: ~25x fewer
multiply-adds). See ``bench/bench_melody.py`` for the measured effect.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.threads import pinned_threads
from stages.melody.constants import (
    BN_EPSILON,
    CONV_LAYERS,
    FREQUENCY_REACH_BELOW,
    N_BINS,
    N_INPUT_CHANNELS,
    PRECISIONS,
)
from stages.melody.weights import DeepSalienceWeights

#: Kernels at least this tall (in frequency bins) run as an FFT correlation along frequency; the
#: 5- and 3-tall kernels are faster as direct convolutions (measured: 5x5 1.6x slower via FFT).
FFT_MIN_KERNEL_HEIGHT: int = 16


def same_padding(kernel: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's `same` for stride 1: the odd extra goes after."""
    total = kernel - 1
    return total // 2, total - total // 2


def fft_length(n_bins: int, kernel_height: int) -> int:
    """Shortest fast FFT length for which the circular correlation equals the zero-padded one."""
    from scipy.fft import next_fast_len

    return next_fast_len(n_bins + max(same_padding(kernel_height)), real=True)


class FrequencyFFTConv(nn.Module):
    """A `same`-padded Conv2d computed with an FFT along frequency (axis 2), direct along time.

    out[o, f, t] = bias[o] + sum_{c, j, dt} w[o, c, j, dt] * x[c, f + j - top, t + dt - left]
    becomes, per rfft bin k: Y[k] = conj(W[k]) @ X[k], with X the time-unfolded input spectrum.
    """

    def __init__(self, conv: nn.Conv2d, n_bins: int) -> None:
        super().__init__()
        out_ch, in_ch, kernel_height, kernel_width = conv.weight.shape
        self.n_bins, self.kernel_width = n_bins, kernel_width
        self.n_fft = fft_length(n_bins, kernel_height)
        self.top = same_padding(kernel_height)[0]
        self.time_pad = same_padding(kernel_width)
        with torch.no_grad():
            spectrum = torch.conj(torch.fft.rfft(conv.weight.double(), n=self.n_fft, dim=2))  # (O, C, K, kw)
            matrix = spectrum.permute(2, 0, 1, 3).reshape(spectrum.shape[2], out_ch, in_ch * kernel_width)
        self.register_buffer("weight_spectrum", matrix.to(torch.complex64).contiguous())
        self.register_buffer("bias", conv.bias.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, _, frames = x.shape
        spectrum = F.pad(torch.fft.rfft(x, n=self.n_fft, dim=2), self.time_pad)  # (B, C, K, T + kw - 1)
        n_freq = spectrum.shape[2]
        columns = torch.stack([spectrum[..., dt:dt + frames] for dt in range(self.kernel_width)], dim=2)
        columns = columns.permute(3, 1, 2, 0, 4).reshape(n_freq, channels * self.kernel_width, batch * frames)
        product = torch.bmm(self.weight_spectrum, columns)  # (K, O, B * T)
        product = product.view(n_freq, -1, batch, frames).permute(2, 1, 0, 3)
        # Circular output index m holds output bin f = m + top (mod n_fft): roll it back in place.
        # A cropped input (fewer rows than n_bins) fits the same FFT length: its zero padding is longer.
        out = torch.roll(torch.fft.irfft(product, n=self.n_fft, dim=2), self.top, dims=2)[:, :, :x.shape[2]]
        return out + self.bias


class DeepSalienceNet(nn.Module):
    """BN -> [Conv -> act -> BN] x 5 -> Conv 1x1 sigmoid; input (B, 6, 360, T) -> output (B, 360, T)."""

    def __init__(self) -> None:
        super().__init__()
        fan_in = N_INPUT_CHANNELS
        self.norms = nn.ModuleList()
        self.convs = nn.ModuleList()
        for _, filters, kernel, _ in CONV_LAYERS:
            self.norms.append(nn.BatchNorm2d(fan_in, eps=BN_EPSILON))
            self.convs.append(nn.Conv2d(fan_in, filters, kernel))
            fan_in = filters
        self.activations = [act for *_, act in CONV_LAYERS]
        self.fft_convs = nn.ModuleDict()
        self.set_precision("float32")
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
        self.fft_convs = nn.ModuleDict({
            str(i): FrequencyFFTConv(conv, N_BINS)
            for i, conv in enumerate(self.convs) if conv.kernel_size[0] >= FFT_MIN_KERNEL_HEIGHT
        })
        return self.set_precision(self.precision)  # the low-precision copies of the new weights

    def _affine(self, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        return scale.view(1, -1, 1, 1), (norm.bias - norm.running_mean * scale).view(1, -1, 1, 1)

    def forward(self, hcqt: torch.Tensor) -> torch.Tensor:
        x = hcqt.contiguous(memory_format=torch.channels_last)
        for i, (norm, conv, activation) in enumerate(zip(self.norms, self.convs, self.activations)):
            scale, shift = self._affine(norm)
            weight, bias = conv.weight, conv.bias
            if i < self.low_precision_layers:
                if i == 0:  # the affine in float32 on the caller's input, then down to the compute dtype
                    x = (x * scale + shift).to(self.compute_dtype)
                else:
                    x.mul_(scale.to(x.dtype)).add_(shift.to(x.dtype))
                weight, bias = self._low_precision[str(i)]
            else:
                # Inference BatchNorm is a per-channel affine; in place except on the caller's input.
                x = x * scale + shift if i == 0 else x.float().mul_(scale).add_(shift)
            if str(i) in self.fft_convs:
                x = self.fft_convs[str(i)](x)
            else:
                kernel_height, kernel_width = conv.kernel_size
                # Zero padding after the BN, like Keras; an even kernel gets one more row after,
                # i.e. pad symmetrically by k/2 and drop the first output row.
                x = F.conv2d(x, weight, bias, padding=(kernel_height // 2, kernel_width // 2))
                if kernel_height % 2 == 0:
                    x = x[:, :, 1:]
                if kernel_width % 2 == 0:
                    x = x[..., 1:]
            x = x.relu_() if activation == "relu" else x.sigmoid_()
        return x[:, 0].float()

    def set_precision(self, precision: str) -> "DeepSalienceNet":
        """Run the direct convolutions before the first FFT layer in ``precision`` (one of
        ``PRECISIONS``); the FFT layer (complex float32) and everything after it stay float32."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        self.precision, self.compute_dtype = precision, getattr(torch, precision)
        first_fft = min((int(i) for i in self.fft_convs), default=len(self.convs))
        self.low_precision_layers = first_fft if precision != "float32" else 0
        self._low_precision = {
            str(i): (conv.weight.detach().to(self.compute_dtype).contiguous(memory_format=torch.channels_last),
                     conv.bias.detach().to(self.compute_dtype))
            for i, conv in enumerate(self.convs[:self.low_precision_layers])
        }
        return self


class TorchSalienceModel:
    """The PyTorch backend: ``predict((B, 6, 360, L) float32) -> (B, 360, L) float32``."""

    backend = "torch"

    def __init__(self, weights: DeepSalienceWeights, threads: int, device: str = "cpu",
                 precision: str = "float32") -> None:
        if device.startswith("cuda"):
            # TF32 convolutions would lose parity with the float32 reference (~1e-3 differences).
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.name = weights.name
        self.device = torch.device(device)
        #: Every call computes at this count (its sums round differently at 1 and 2 threads).
        self.threads = threads
        with pinned_threads(threads):  # the weight spectra are computed here (torch may be new here)
            # precision after the move: its low-precision weight copies are plain tensors, not buffers
            self.net = DeepSalienceNet().load_keras_weights(weights).to(self.device).set_precision(precision)

    def predict(self, hcqt: np.ndarray, lowest_bin: int = 0) -> np.ndarray:
        """(B, 6, 360, L) HCQT -> (B, 360 - lowest_bin, L) salience of bins ``lowest_bin`` and up.

        Only the input rows those bins can see (``FREQUENCY_REACH_BELOW`` more below) go through the
        network: the rows its zero padding spoils at the cut are exactly the ones dropped after.
        """
        if hcqt.ndim != 4 or hcqt.shape[1:3] != (N_INPUT_CHANNELS, N_BINS):
            raise ValueError(f"expected HCQT batch (B, {N_INPUT_CHANNELS}, {N_BINS}, L), got {hcqt.shape}")
        if not 0 <= lowest_bin < N_BINS:
            raise ValueError(f"lowest_bin must be in [0, {N_BINS}), got {lowest_bin}")
        first_row = max(lowest_bin - FREQUENCY_REACH_BELOW, 0)
        with pinned_threads(self.threads), torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(hcqt[:, :, first_row:], dtype=np.float32)).to(self.device)
            return self.net(x)[:, lowest_bin - first_row:].cpu().numpy()
