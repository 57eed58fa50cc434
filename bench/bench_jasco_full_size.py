"""A full-size JASCO 400M (random values, every name and shape of the release) on this machine.

    python bench/bench_jasco_full_size.py [--variant chords_drums_melody|chords_drums] [--steps 1]
        [--t5 DIR] [--device cpu] [--json OUT]

Builds ``state_dict.bin`` from ../shared/reference/jasco_checkpoint/shapes_400m.json (random
normal values, EnCodec copy included) with chordflow's own exporter config, loads it with the
product's loader (strict), and generates 10 s with guided Euler (cfg 3/1: three guidance terms
in one batched forward) for ``--steps`` steps, then decodes. Reports the load time, seconds per
guided step, the decode time and the process's peak resident memory (``ru_maxrss``; the random
file is written by a child process, so this is loading and sampling only), against the size of
the file measured in the same run. The T5 stand-in of the parity fixture (768-d) serves
as text encoder unless ``--t5`` names a real T5-base.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import report_figures  # noqa: E402

import torch  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "reference" / "jasco_checkpoint"


def random_release(variant: str, out: Path, seed: int = 0) -> int:
    """Write a random release of ``variant``'s shapes into ``out``; returns the LM parameter count."""
    from model.config import ModelConfig
    from model.jasco.release import ENCODEC_PREFIX, export_config, write_release

    spec = json.loads((FIXTURES / "shapes_400m.json").read_text())
    scale = spec["scale"]
    shapes = {k: v["shape"] for k, v in spec["variants"][variant]["state_dict"].items()}
    generator = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(shape, generator=generator) * 0.02 for k, shape in shapes.items()}
    for key in [k for k in state if k.endswith("codebook.inited")]:
        state[key] = torch.ones(shapes[key])
    codec = {k[len(ENCODEC_PREFIX):]: v for k, v in state.items() if k.startswith(ENCODEC_PREFIX)}
    weights = {k: v for k, v in state.items() if not k.startswith(ENCODEC_PREFIX)}
    melody = "condition_provider.conditioners.melody.output_proj.weight" in weights
    config = ModelConfig(architecture="jasco", dim=scale["dim"], layers=scale["num_layers"], heads=scale["num_heads"],
                         latent_dim=128, drum_dim=128, text_dim=768, chord_embed_dim=16, drum_embed_dim=2,
                         melody_embed_dim=16 if melody else 0, frames_per_token=1, drum_pool_frames=3)
    xp = export_config(config, latent_mean=-0.0074, latent_std=4.0102, segment_seconds=10.0, sample_rate=32000)
    write_release(out, config, weights, codec, xp)
    return sum(v.numel() for v in weights.values())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="chords_drums_melody", choices=["chords_drums_melody", "chords_drums"])
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--t5", default=str(FIXTURES / "tiny_cdm" / "hf_t5"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--write-release", help=argparse.SUPPRESS)  # child process: only write the files
    args = parser.parse_args(argv)
    if args.write_release:
        print(random_release(args.variant, Path(args.write_release)))
        return {}

    from model.sampling.sample import MusicGenerator

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "jasco-400m-random"
        # written by a child process, so the peak memory below is the loader's and the sampler's only
        child = subprocess.run([sys.executable, __file__, "--variant", args.variant, "--write-release", str(folder)],
                               check=True, capture_output=True, text=True)
        parameters = int(child.stdout.strip().splitlines()[-1])
        file_bytes = (folder / "state_dict.bin").stat().st_size
        started = time.perf_counter()
        generator = MusicGenerator.from_jasco(str(folder), t5=args.t5, device=args.device, solver="euler",
                                              steps=args.steps, cfg_coef_all=3.0, cfg_coef_txt=1.0,
                                              separate_drums=False)
        load_seconds = time.perf_counter() - started
        times: list[float] = []
        inner = generator.guided_velocity

        def timed(cond):
            velocity = inner(cond)

            def call(t, x):
                begin = time.perf_counter()
                out = velocity(t, x)
                times.append(time.perf_counter() - begin)
                return out

            return call

        generator.guided_velocity = timed
        drums = torch.randn(320000).numpy() * 0.1
        chords = [("C", 0.0), ("Am", 2.5), ("F", 5.0), ("G7", 7.5)]
        melody = torch.zeros(53, 500).numpy() if args.variant == "chords_drums_melody" else None
        started = time.perf_counter()
        audio = generator.generate_music(["lofi hip hop with warm keys"], chords=chords, drums_wav=drums,
                                         drums_sample_rate=32000, melody_salience_matrix=melody)
        total = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = {
        "variant": args.variant, "device": args.device, "lm_parameters": parameters,
        "state_dict_bytes": file_bytes, "load_seconds": round(load_seconds, 2),
        "guided_step_seconds": [round(t, 2) for t in times], "guidance_terms": 3,
        "generate_seconds": round(total, 2), "decode_and_conditions_seconds": round(total - sum(times), 2),
        "audio_samples": int(audio.shape[-1]), "peak_rss_gib": round(peak_kib / 2**20, 2),
        "peak_rss_over_state_dict": round(peak_kib * 1024 / file_bytes, 2), "threads": torch.get_num_threads(),
    }
    return report_figures(figures, args.json)


if __name__ == "__main__":
    main()
