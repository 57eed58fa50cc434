"""Benchmark the latents codecs: encode and decode real-time factors (seconds of compute per second
of audio; < 1 is faster than real time).

    python bench/bench_latents.py [--seconds 10] [--batch 1 4] [--repeat 2] [--json OUT]

Times every codec on a synthetic chord signal of ``--seconds``. The EnCodec backends need weights
that cannot be downloaded here, so unless a checkpoint is given (``--encodec-32khz DIR``,
``--encodec-24khz FILE``) they are timed with random weights in the real models' full-size
architectures (same classes, same sizes: the speed is the real one, the sound is not). Batch
sizes > 1 encode/decode that many signals stacked in one forward pass (EnCodec batches natively;
the spectral codec loops). Best of ``--repeat`` runs, after a warm-up.
CPU only (the codecs run on CPU tensors).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from music.chords import label_pitch_classes  # noqa: E402
from pipeline.atomic import atomic_write_text  # noqa: E402
from pipeline.corpus.tones import chord_tone  # noqa: E402
from stages.latents.codec import Codec, CodecError  # noqa: E402
from stages.latents.codecs import CODECS, make_codec  # noqa: E402

#: facebook/encodec_32khz's published configuration (transformers EncodecConfig fields).
ENCODEC_32KHZ_CONFIG = dict(sampling_rate=32000, upsampling_ratios=[8, 5, 4, 4], num_filters=64, hidden_size=128,
                            codebook_dim=128, codebook_size=2048, num_lstm_layers=2, target_bandwidths=[2.2],
                            use_causal_conv=False, use_conv_shortcut=False, norm_type="weight_norm")
#: Backends with a network that takes a stacked batch in one forward pass.
ENCODEC_NAMES: tuple[str, ...] = ("encodec_32khz", "encodec_24khz")


def full_size_random_encodec(folder: Path) -> dict[str, dict]:
    from transformers import EncodecConfig, EncodecModel

    from stages.latents.encodec_meta import EncodecArchitecture, build_model

    EncodecModel(EncodecConfig(**ENCODEC_32KHZ_CONFIG)).save_pretrained(folder / "encodec_32khz")
    torch.save(build_model(EncodecArchitecture()).state_dict(), folder / "encodec_24khz.th")
    return {"encodec_32khz": {"checkpoint": str(folder / "encodec_32khz")},
            "encodec_24khz": {"checkpoint": str(folder / "encodec_24khz.th")}}


def batched(codec: Codec, step: str, items: list[np.ndarray]) -> None:
    """One batched forward pass where the backend has a network, else a loop."""
    if codec.name not in ENCODEC_NAMES or len(items) == 1:
        for item in items:
            (codec.encode if step == "encode" else codec.decode)(item)
        return
    with torch.inference_mode():
        if step == "encode":
            codec.model.encoder(torch.from_numpy(np.stack(items))[:, None])
        else:
            codec.model.decoder(torch.from_numpy(np.stack(items)).transpose(1, 2))


def time_codec(codec: Codec, seconds: float, batch: int, repeat: int) -> dict[str, float]:
    wav = sum(chord_tone(label_pitch_classes(c), seconds, codec.sample_rate, octave=o) for c, o in (("Am", 3), ("C", 4)))
    latents = codec.encode(wav)
    figures = {}
    for step, items in (("encode", [wav] * batch), ("decode", [latents] * batch)):
        batched(codec, step, items)  # warm-up
        best = min(_timed(lambda: batched(codec, step, items)) for _ in range(repeat))
        figures[f"{step}_rtf"] = best / (seconds * batch)
    return figures


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--codec", nargs="+", default=sorted(CODECS))
    parser.add_argument("--encodec-32khz", help="checkpoint directory (default: full-size random weights)")
    parser.add_argument("--encodec-24khz", help="checkpoint file (default: full-size random weights)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        options = full_size_random_encodec(Path(tmp))
        if args.encodec_32khz:
            options["encodec_32khz"] = {"checkpoint": args.encodec_32khz}
        if args.encodec_24khz:
            options["encodec_24khz"] = {"checkpoint": args.encodec_24khz}
        for name in args.codec:
            try:
                codec = make_codec(name, options.get(name))
            except CodecError as exc:  # a codec that needs files this machine lacks (jasco_encodec)
                print(f"skipped {name}: {exc}")
                continue
            random = name in ENCODEC_NAMES and not getattr(args, name.replace("-", "_"))
            for batch in args.batch:
                figures = time_codec(codec, args.seconds, batch, args.repeat)
                rows.append({"codec": name, "weights": ("random (full size)" if random else
                                                          "pretrained" if name in ENCODEC_NAMES else "none"),
                             "batch": batch, "seconds": args.seconds,
                             "dim": codec.dim, "frame_rate": round(codec.frame_rate, 2), **figures})
    print(f"CPU: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}\n")
    print("| codec | weights | batch | dim | fps | encode RTF | decode RTF |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['codec']} | {r['weights']} | {r['batch']} | {r['dim']} | {r['frame_rate']} | "
              f"{r['encode_rtf']:.4f} | {r['decode_rtf']:.4f} |")
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
