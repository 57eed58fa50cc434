"""Where the realism goes: the musicnn Fréchet distance of real clips, of the offline codec's round trip
and of its two halves, and of the generated clips, all against the same held-out real reference.

    python bench/bench_realism_ceiling.py [--manifest manifests/demo.parquet]
        [--ceiling-report data/heldout/ceiling/report.json] [--generated-report data/generated/report.json]
        [--params params.yaml] [--bins-per-octave 24 48 96] [--draws 20] [--json OUT]

The pipeline's ``realism.frechet`` compares each group (15 clips of 10 s) with all demo clips, and
scales it by ``real_vs_real`` (even vs odd demo clips, 32 whole clips each). Here every set is compared
with the demo clips that are *not* the held-out tracks (so no set is compared with itself), and the
yardstick is a set of the same size made the same way: the held-out tracks' real first 10 s, and random
draws of 15 other real clips. The codec (``logspec_griffinlim``) is split into its two losses, on the
held-out tracks' first 10 s: the exact STFT magnitude through Griffin-Lim (phase retrieval alone), and
the codec's band magnitude with the true phase (band resolution alone), both with the codec settings of
``latents.logspec_griffinlim`` in ``--params``; then the whole round trip at each ``--bins-per-octave``
(the latent's resolution; its dimension is reported).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import report_figures  # noqa: E402

HELDOUT_SECONDS = 10.0
#: Rate every clip is read at: the codec's (musicnn resamples to its own 16 kHz).
READ_RATE = 22050


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="manifests/demo.parquet")
    parser.add_argument("--ceiling-report", default="data/heldout/ceiling/report.json")
    parser.add_argument("--generated-report", default="data/generated/report.json")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--bins-per-octave", type=int, nargs="+", default=[24, 48, 96])
    parser.add_argument("--draws", type=int, default=20, help="random same-size real sets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()

    import torch
    from tqdm.auto import tqdm

    from model.evaluation.embedding import frechet_distance
    from model.evaluation.judges.musicnn import MusicnnEmbedding
    from pipeline.audio import load_audio
    from pipeline.config import load_section
    from pipeline.manifest import read_manifest
    from stages.latents.config import LatentsConfig
    from stages.latents.logspec import LogSpecGriffinLim
    from stages.latents.spectral import griffin_lim, stft_magnitude

    torch.set_num_threads(1)
    judge = MusicnnEmbedding()
    embed = lambda mono: judge.embed(np.asarray(mono, dtype=np.float32)[None], READ_RATE)  # (windows, 200)

    def read(path: Path | str, seconds: float | None = None) -> np.ndarray:
        samples, _ = load_audio(path, sample_rate=READ_RATE, channels=1)
        return samples[0, : int(seconds * READ_RATE)] if seconds else samples[0]

    manifest = read_manifest(args.manifest)
    tracks = dict(zip(manifest.column("track_id").to_pylist(), manifest.column("path").to_pylist()))
    ceiling_report = json.loads(Path(args.ceiling_report).read_text())
    heldout = [clip["source_track"] for clip in ceiling_report["clips"]]
    whole = {t: embed(read(p)) for t, p in tqdm(tracks.items(), desc="real clips, whole")}
    first = {t: embed(read(p, HELDOUT_SECONDS)) for t, p in tqdm(tracks.items(), desc="real clips, first 10 s")}
    stack = lambda sets: np.concatenate(list(sets))
    reference = stack(whole[t] for t in tracks if t not in heldout)
    versus = lambda sets: round(frechet_distance(stack(sets), reference), 2)

    rng = np.random.default_rng(args.seed)
    draws = []
    for _ in range(args.draws):
        pick = set(rng.choice(sorted(tracks), len(heldout), replace=False))
        draws.append(frechet_distance(stack(first[t] for t in pick), stack(whole[t] for t in tracks if t not in pick)))
    real = versus(first[t] for t in heldout)
    rows = {"real, held-out tracks' first 10 s": real}

    base = Path(args.ceiling_report).parent
    rows["codec round trip (the decode ceiling)"] = versus(embed(read(base / c["wav"])) for c in ceiling_report["clips"])
    generated_report = Path(args.generated_report)
    if generated_report.is_file():
        clips = json.loads(generated_report.read_text())["clips"]
        for group in sorted({c["group"] for c in clips}):
            rows[f"generated: {group}"] = versus(embed(read(generated_report.parent / c["wav"]))
                                                 for c in clips if c["group"] == group)

    config = load_section(LatentsConfig, "latents", args.params).logspec_griffinlim
    window = torch.hann_window(config.n_fft)
    originals = [read(tracks[t], HELDOUT_SECONDS) for t in heldout]
    phase_only, bands_only = [], []
    codec = LogSpecGriffinLim(config)
    for x in tqdm(originals, desc="codec halves"):
        magnitude = stft_magnitude(x, config.n_fft, config.hop_length)
        phase_only.append(embed(griffin_lim(magnitude, config.n_fft, config.hop_length, config.griffin_lim_iters,
                                            config.griffin_lim_momentum, len(x))))
        spectrum = torch.stft(torch.from_numpy(x), config.n_fft, config.hop_length, window=window, center=True,
                              pad_mode="reflect", return_complex=True)
        bands = codec.magnitude(codec.encode(x))[:, : spectrum.shape[1]]
        bands_only.append(embed(torch.istft(bands * torch.exp(1j * spectrum.angle()), config.n_fft, config.hop_length,
                                            window=window, length=len(x)).numpy()))
    rows["exact magnitude + Griffin-Lim (phase retrieval alone)"] = versus(phase_only)
    rows[f"band magnitude ({config.bins_per_octave}/octave) + true phase (band resolution alone)"] = versus(bands_only)
    resolutions = {}
    for bins in args.bins_per_octave:
        codec = LogSpecGriffinLim(dataclasses.replace(config, bins_per_octave=bins))
        distance = versus(embed(codec.decode(codec.encode(x))[: len(x)]) for x in tqdm(originals, desc=f"{bins}/octave"))
        resolutions[str(bins)] = {"latent_dim": codec.dim, "frechet": distance, "over_real": round(distance / real, 2)}

    figures = {
        "embedding": judge.identity.model, "heldout_clips": len(heldout),
        "reference": f"the {len(reference)} windows of the {len(tracks) - len(heldout)} demo clips not held out",
        "same_size_real_draws": {"n": args.draws, "mean": round(float(np.mean(draws)), 2),
                                 "min": round(float(np.min(draws)), 2), "max": round(float(np.max(draws)), 2)},
        "sets": {name: {"frechet": d, "over_real": round(d / real, 2)} for name, d in rows.items()},
        "codec_round_trip_by_bins_per_octave": resolutions,
    }
    report_figures(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
