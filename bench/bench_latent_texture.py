"""Is the generated latent music or music plus leftover noise? Texture statistics of a checkpoint's
generations against the real clips' latents, in the normalised latent space the model works in.

    python bench/bench_latent_texture.py [--checkpoint models/demo/checkpoint.pt]
        [--prompts data/heldout/prompts.jsonl] [--ceiling-report data/heldout/ceiling/report.json]
        [--manifest manifests/demo.parquet] [--limit 8] [--json OUT]

The ``chords_given`` prompts (``--limit`` of them) are generated with the checkpoint's recommended
settings and with a few solver and guidance variants (``return_latents``, no decoding), and the same
tracks' real first seconds are encoded by the checkpoint's codec and normalised by its statistics.
Per set: the mean over frames and channels, each channel's spread over time (std, averaged over
channels) and the mean absolute change from one frame to the next. White noise of unit variance
changes by 2/sqrt(pi) = 1.13 per frame; real music far less. A generator that leaves part of its
starting noise in place shows it here whatever its solver: the frame-to-frame change stays high.
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

#: Solver and guidance variants (GenerateConfig overrides) next to the recommended settings.
VARIANTS = {"recommended": {}, "euler 64 steps": {"steps": 64},
            "no guidance": {"cfg_coef_all": 1.0, "cfg_coef_txt": 0.0}}
GROUP = "chords_given"


def texture(latents: list[np.ndarray]) -> dict[str, float]:
    """Statistics of (T, D) normalised latents, averaged over the clips."""
    mean = lambda f: round(float(np.mean([f(x) for x in latents])), 3)
    return {"mean": mean(lambda x: x.mean()), "channel_std_over_time": mean(lambda x: x.std(0).mean()),
            "frame_to_frame_change": mean(lambda x: np.abs(np.diff(x, axis=0)).mean())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="models/demo/checkpoint.pt")
    parser.add_argument("--prompts", default="data/heldout/prompts.jsonl")
    parser.add_argument("--ceiling-report", default="data/heldout/ceiling/report.json")
    parser.add_argument("--manifest", default="manifests/demo.parquet")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--json")
    args = parser.parse_args()

    import torch

    from model.sampling.sample import MusicGenerator
    from pipeline.audio import load_audio
    from pipeline.manifest import read_manifest

    generator = MusicGenerator.from_checkpoint(args.checkpoint)
    prompts = [json.loads(line) for line in Path(args.prompts).read_text().splitlines() if line.strip()]
    prompts = [p for p in prompts if p.get("group") == GROUP][: args.limit]
    sources = {c["id"]: c["source_track"] for c in json.loads(Path(args.ceiling_report).read_text())["clips"]}
    manifest = read_manifest(args.manifest)
    paths = dict(zip(manifest.column("track_id").to_pylist(), manifest.column("path").to_pylist()))
    codec, frames = generator.codec, generator.frames_for(generator.params.seconds)

    def real(prompt: dict) -> np.ndarray:
        source = sources[prompt["id"].rsplit("_", 2)[0]]  # heldout_000_chords_given -> heldout_000
        samples, _ = load_audio(paths[source], sample_rate=codec.sample_rate, channels=1)
        encoded = codec.encode(samples[0, : int(generator.params.seconds * codec.sample_rate)])
        return np.asarray(generator.stats.normalise(encoded, generator.normalisation))[:frames]

    sets = {"real": texture([real(p) for p in prompts])}
    recommended = generator.params
    for name, overrides in VARIANTS.items():
        generator.params = dataclasses.replace(recommended, **overrides)
        with torch.no_grad():
            _, latents = generator.generate_music([p["description"] for p in prompts],
                                                  chords=[p["chords"] for p in prompts], return_latents=True)
        sets[f"generated, {name}"] = texture([x.float().cpu().numpy() for x in latents])
        print(name, sets[f"generated, {name}"], flush=True)
    report_figures({"checkpoint": args.checkpoint, "group": GROUP, "clips": len(prompts), "sets": sets}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
