"""A corpus of bad inputs, generated here: every file is either processed correctly or lands in a
rejects/error table with a reason, and no stage crashes.

The manifest, then the ``loudness``, ``chords`` and ``drums`` stages run over it. A file that the
manifest accepts but that fails later (NaN/Inf samples, a file corrupted after the manifest)
must be a per-track error of the stage, never a failed shard. Unreadable permissions cannot be
made with chmod when the tests run as root (CI does), so that file's ``open`` is made to fail.
File and folder names that are not valid UTF-8 (and such lines in list files) have their own
tests: they are rejected as ``bad_file_name`` and the rest of the manifest is written.
The 3-hour file has its own test at the end: streamed by the manifest and by the loudness stage
(chunk by chunk, bounded memory), and kept out of whole-track stages (chords) by
``sharding.max_track_seconds``, each with peak RSS measured.
"""

from __future__ import annotations

import builtins
import errno
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml

from pipeline.manifest import build_manifest, read_manifest, read_rejects, summarize, write_manifest
from pipeline.manifest_scan import make_track_id
from pipeline.planning import ShardingConfig
from pipeline.reader import StageStore
from pipeline.runner import run_stage
from pipeline.shard_task import TOO_LONG
from tests.fault_helpers import REPO_ROOT, peak_rss_of_tree, start, tail

SR = 22050
UNREADABLE_NAME = "no_permission.wav"
THREE_HOURS_S = 3 * 3600
LONG_RATE = 8000
#: Peak RSS bounds (bytes): the manifest streams a 173 MB file; a skipped long track is never
#: decoded (decoding the 3 h file for loudness whole peaks at ~6.5 GB).
MANIFEST_RSS_BOUND = 1536 * 2**20
SKIPPED_LONG_RSS_BOUND = 1024 * 2**20
STREAMED_LONG_RSS_BOUND = 1024 * 2**20

NON_FINITE_OR_CHANGED = {"nan_start.wav", "nan_middle.wav", "inf_end.wav", "corrupted_after_manifest.wav"}
# name -> what must happen: "ok" (in the manifest and processed by every stage), a manifest
# error type, or "stage:<error type>" (accepted by the manifest, a per-track error in stages).
EXPECTED = {
    "corrupt_header.wav": {"not_audio", "corrupt"},
    "truncated.wav": {"truncated"},
    "truncated.flac": {"truncated", "corrupt"},
    "zero_length.wav": {"zero_length"},
    "empty.flac": {"empty"},
    "one_sample.wav": {"ok"},
    "silent.wav": {"ok"},
    # The manifest's probe does not look at sample values (tests/test_audio.py keeps it so): NaN/Inf
    # anywhere is a per-track error of the stages.
    "nan_start.wav": {"stage:non_finite"},
    "nan_middle.wav": {"stage:non_finite"},
    "inf_end.wav": {"stage:non_finite"},
    "dc_only.wav": {"ok"},
    "clipping_float.wav": {"ok"},
    "clipping_int.wav": {"ok"},
    "six_channel.wav": {"ok"},
    "rate_8k.wav": {"ok"},
    "rate_192k.wav": {"ok"},
    "flac_named.mp3": {"ok"},
    "text_named.wav": {"not_audio"},
    UNREADABLE_NAME: {"unreadable"},
    "loop_a.wav": {"unreadable"},
    "dangling.wav": {"unreadable"},
    "Ünïcødé ♫ 日本語.wav": {"ok"},
    "   lots   of   spaces   .wav": {"ok"},
    "zz_copy_of_silent.wav": {"duplicate"},
    "outside/outside_root.wav": {"ok"},
    "corrupted_after_manifest.wav": {"stage:corrupt", "stage:truncated", "stage:not_audio"},
    "extra.txt": {"not_audio"},  # the list given as an input is also a file of the scanned folder
}


def chord_tone(seconds: float, sr: int = SR, channels: int = 1, amplitude: float = 0.3) -> np.ndarray:
    """(frames, channels) float32: a C major triad."""
    t = np.arange(round(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)) * amplitude / 3
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


def write_bad_corpus(root: Path) -> Path:
    """The corpus of EXPECTED under ``root/data`` (plus one file outside it); returns the list file."""
    data = root / "data"
    data.mkdir(parents=True)
    good = chord_tone(2.0)
    sf.write(data / "corrupt_header.wav", good, SR, subtype="PCM_16")
    with open(data / "corrupt_header.wav", "r+b") as handle:
        handle.write(np.random.default_rng(0).integers(0, 256, 44, dtype=np.uint8).tobytes())
    sf.write(data / "truncated.wav", good, SR, subtype="PCM_16")
    _cut(data / "truncated.wav", 0.5)
    sf.write(data / "truncated.flac", chord_tone(4.0), SR)
    _cut(data / "truncated.flac", 0.4)
    sf.write(data / "zero_length.wav", np.zeros((0, 1), np.float32), SR, subtype="PCM_16")
    (data / "empty.flac").write_bytes(b"")
    sf.write(data / "one_sample.wav", np.full((1, 1), 0.25, np.float32), SR, subtype="PCM_16")
    sf.write(data / "silent.wav", np.zeros((SR * 2, 2), np.float32), SR, subtype="PCM_16")
    for name, where, value in (("nan_start", 0, np.nan), ("nan_middle", SR, np.nan), ("inf_end", -1, np.inf)):
        samples = good.copy()
        samples[where] = value
        sf.write(data / f"{name}.wav", samples, SR, subtype="FLOAT")
    sf.write(data / "dc_only.wav", np.full((SR * 2, 1), 0.5, np.float32), SR, subtype="PCM_16")
    sf.write(data / "clipping_float.wav", good * 8.0, SR, subtype="FLOAT")  # peaks far above full scale
    sf.write(data / "clipping_int.wav", np.clip(good * 8.0, -1, 1), SR, subtype="PCM_16")
    sf.write(data / "six_channel.wav", chord_tone(2.0, channels=6), SR, subtype="PCM_16")
    sf.write(data / "rate_8k.wav", chord_tone(2.0, sr=8000), 8000, subtype="PCM_16")
    sf.write(data / "rate_192k.wav", chord_tone(2.0, sr=192000), 192000, subtype="PCM_24")
    sf.write(data / "flac_named.mp3", good, SR, format="FLAC")
    (data / "text_named.wav").write_text("this is not audio\n" * 100)
    sf.write(data / UNREADABLE_NAME, good, SR, subtype="PCM_16")
    os.symlink("loop_b.wav", data / "loop_a.wav")
    os.symlink("loop_a.wav", data / "loop_b.wav")
    os.symlink("missing_target.wav", data / "dangling.wav")
    os.symlink(".", data / "folder_loop")  # a directory cycle: the scan must not walk it forever
    sf.write(data / "Ünïcødé ♫ 日本語.wav", chord_tone(2.0, amplitude=0.2), SR, subtype="PCM_16")
    sf.write(data / "   lots   of   spaces   .wav", chord_tone(2.5), SR, subtype="PCM_16")
    shutil.copy(data / "silent.wav", data / "zz_copy_of_silent.wav")
    sf.write(data / "corrupted_after_manifest.wav", chord_tone(3.0), SR, subtype="PCM_16")
    outside = root / "outside"
    outside.mkdir()
    sf.write(outside / "outside_root.wav", chord_tone(2.0, amplitude=0.1), SR, subtype="PCM_16")
    # The data folder plus a list that names a file outside it, by a relative path with "..".
    listing = data / "extra.txt"
    listing.write_text("../outside/outside_root.wav\n")
    return listing


def _cut(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


# ----------------------------------------------------------------------------- names that are not UTF-8


def rename_to_bytes(path: Path, raw_name: bytes) -> Path:
    """Rename ``path`` to the byte name ``raw_name`` (any bytes but / and NUL, as Linux allows)."""
    target = os.fsencode(path.parent) + b"/" + raw_name
    try:
        os.rename(path, target)
    except OSError as exc:  # e.g. macOS file systems insist on UTF-8
        pytest.skip(f"this file system refuses names that are not UTF-8: {exc}")
    return Path(os.fsdecode(target))


def escaped(path: str | Path) -> str:
    """The printable form a rejects table must show: bytes that are not UTF-8 as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def write_tone(path: Path, amplitude: float) -> Path:
    """Half a second of chord tone (distinct amplitudes: distinct content, no duplicates)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, chord_tone(0.5, amplitude=amplitude), SR, subtype="PCM_16")
    return path


def test_non_utf8_names_are_rejected_and_the_manifest_is_written(tmp_path) -> None:
    data = tmp_path / "data"
    write_tone(data / "good.wav", 0.1)
    write_tone(data / "also good.wav", 0.2)
    bad_file = rename_to_bytes(write_tone(data / "x.wav", 0.3), b"bad\xff.wav")
    bad_folder = rename_to_bytes(write_tone(data / "sub" / "inside.wav", 0.4).parent, b"caf\xe9")
    os.symlink(b"gone\xff.wav", os.fsencode(data / "link.wav"))  # a good name, its dangling target is not
    table, rejects = build_manifest([data], workers=1)
    out = tmp_path / "manifests" / "m.parquet"
    write_manifest(table, rejects, out)

    kept = sorted(os.path.basename(p) for p in read_manifest(out).column("path").to_pylist())
    assert kept == ["also good.wav", "good.wav"]
    found = {row["path"]: row for row in read_rejects(out).to_pylist()}
    link = found.pop(str(data / "link.wav"))
    assert link["error_type"] == "unreadable" and "gone\\xff.wav" in link["reason"]
    assert set(found) == {escaped(bad_file), escaped(bad_folder / "inside.wav")}
    for path, row in found.items():
        assert row["error_type"] == "bad_file_name" and path in row["reason"] and "convmv" in row["reason"]
    assert "bad\\xff.wav" in found[escaped(bad_file)]["reason"]
    assert found[escaped(bad_folder / "inside.wav")]["reason"].startswith("the folder name is not valid UTF-8")
    assert summarize(table, rejects) == "5 files -> 2 tracks (0.00 h), 3 rejected: bad_file_name 2, unreadable 1"
    assert make_track_id(str(bad_file), str(data)).startswith("bad-")  # hashing never crashes on such a name


def test_a_non_utf8_line_in_a_list_rejects_only_that_line(tmp_path, caplog) -> None:
    data = tmp_path / "data"
    for amplitude, name in enumerate(("good.wav", "second.wav", "third.wav"), start=1):
        write_tone(data / name, amplitude / 10)
    rename_to_bytes(write_tone(data / "x.wav", 0.4), b"bad\xff.wav")
    rename_to_bytes(write_tone(data / "y.wav", 0.5), b"caf\xe9.wav")
    (tmp_path / "tracks.txt").write_bytes(b"data/good.wav\ndata/bad\xff.wav\r\ndata/second.wav\n")
    (tmp_path / "train.jsonl").write_bytes(
        b'{"path": "data/caf\xe9.wav"}\n'
        b'{"path": "data/third.wav", "description": "caf\xe9 au lait"}\n')  # only the path matters
    with caplog.at_level("WARNING"):
        table, rejects = build_manifest([tmp_path / "tracks.txt", tmp_path / "train.jsonl"], workers=1)
    assert 'train.jsonl:2: bytes that are not UTF-8 outside "path"' in caplog.text
    assert sorted(os.path.basename(p) for p in table.column("path").to_pylist()) == [
        "good.wav", "second.wav", "third.wav"]
    reasons = {os.path.basename(r["path"]): (r["error_type"], r["reason"]) for r in rejects.to_pylist()}
    assert set(reasons) == {"bad\\xff.wav", "caf\\xe9.wav"}
    assert reasons["bad\\xff.wav"][0] == reasons["caf\\xe9.wav"][0] == "bad_file_name"
    assert "tracks.txt:2" in reasons["bad\\xff.wav"][1] and "train.jsonl:1" in reasons["caf\\xe9.wav"][1]


@pytest.fixture(scope="module")
def unreadable_open():
    """``open`` fails with EACCES for the unreadable file (chmod does not stop root)."""
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file).endswith(UNREADABLE_NAME):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    builtins.open = guarded_open
    try:
        yield
    finally:
        builtins.open = real_open


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory, unreadable_open):
    root = tmp_path_factory.mktemp("bad_inputs")
    listing = write_bad_corpus(root)
    data = root / "data"
    table, rejects = build_manifest([data, listing], workers=1, root=data)
    manifest = root / "manifest.parquet"
    write_manifest(table, rejects, manifest)
    sf.write(data / "corrupted_after_manifest.wav", chord_tone(3.0), SR, subtype="PCM_16")
    _cut(data / "corrupted_after_manifest.wav", 0.3)  # changed under the manifest's feet
    return root, manifest, table, rejects


def name_of(path: str, root: Path) -> str:
    return os.path.relpath(os.path.normpath(path), root / "data") if "outside" not in path else \
        "outside/" + os.path.basename(path)


def test_manifest_accepts_or_rejects_every_file_with_a_reason(bad_corpus) -> None:
    root, _, table, rejects = bad_corpus
    accepted = {name_of(p, root) for p in table.column("path").to_pylist()}
    rejected = {name_of(r["path"], root): r for r in rejects.to_pylist()}
    assert not accepted & set(rejected), accepted & set(rejected)
    for name, allowed in EXPECTED.items():
        if name in accepted:
            assert allowed & {"ok"} or any(a.startswith("stage:") for a in allowed), f"{name} accepted"
        else:
            assert name in rejected, f"{name}: neither in the manifest nor in the rejects"
            row = rejected[name]
            assert row["error_type"] in allowed, f"{name}: {row}"
            assert row["reason"].strip(), f"{name}: empty reason"
    assert "loop_b.wav" in rejected and rejected["loop_a.wav"]["reason"] == "unreadable: symlink loop"
    assert "dangling symlink" in rejected["dangling.wav"]["reason"]
    assert "Permission denied" in rejected[UNREADABLE_NAME]["reason"]
    ids = table.column("track_id").to_pylist()
    assert len(ids) == len(set(ids)) and all(tid.isascii() and " " not in tid for tid in ids)


def stage_outcomes(stage: str, params: dict, bad_corpus) -> tuple[dict, dict]:
    root, manifest, table, _ = bad_corpus
    out = root / stage
    report = run_stage(stage, params, manifest, out, ShardingConfig(tracks_per_shard=4), progress=False)
    assert report.ok, f"{stage}: shards failed (a crash, not a per-track error): {report.failed_shards}"
    store = StageStore(out)
    errors = {name_of(e["path"], root): e for e in store.errors().to_pylist()}
    done = {name_of(store.get(tid)["path"], root): store.get(tid) for tid in store.track_ids()}
    manifest_names = {name_of(p, root) for p in table.column("path").to_pylist()}
    assert set(done) | set(errors) == manifest_names and not set(done) & set(errors)
    for name, error in errors.items():
        assert f"stage:{error['error_type']}" in EXPECTED[name], f"{stage}: {name}: {error}"
        assert error["reason"].startswith(error["path"]), error
    for name in done:
        assert "ok" in EXPECTED[name], f"{stage}: {name} should have failed"
    return done, errors


@pytest.mark.timeout(300)
def test_loudness_processes_or_reports_every_track(bad_corpus) -> None:
    done, errors = stage_outcomes("loudness", {}, bad_corpus)
    assert set(errors) == NON_FINITE_OR_CHANGED
    assert done["silent.wav"]["peak_db"] == -120.0 and done["silent.wav"]["silent_fraction"] == 1.0
    np.testing.assert_allclose(done["dc_only.wav"]["rms_db"][:-1], 20 * np.log10(0.5), atol=0.05)
    assert done["clipping_float.wav"]["peak_db"] > 6.0  # kept as decoded, not clipped to full scale
    assert done["one_sample.wav"]["rms_db"].shape == (1,)
    for name in ("rate_8k.wav", "rate_192k.wav", "six_channel.wav"):
        assert done[name]["rms_db"].shape == (100,), name  # 2 s at 50 fps whatever the rate/channels
        assert np.all(np.isfinite(done[name]["rms_db"]))


@pytest.mark.timeout(300)
def test_chords_processes_or_reports_every_track(bad_corpus) -> None:
    done, errors = stage_outcomes("chords", {}, bad_corpus)
    assert set(errors) == NON_FINITE_OR_CHANGED
    labels = {name: {s["label"] for s in row["timeline"]} for name, row in done.items()}
    assert labels["silent.wav"] == {"N"}
    for name in ("rate_8k.wav", "rate_192k.wav", "six_channel.wav", "clipping_int.wav"):
        assert "C" in labels[name], (name, labels[name])


@pytest.mark.timeout(300)
def test_drums_processes_or_reports_every_track(bad_corpus) -> None:
    done, errors = stage_outcomes("drums", {}, bad_corpus)
    assert set(errors) == NON_FINITE_OR_CHANGED


# ----------------------------------------------------------------------------- the 3-hour file


@pytest.fixture(scope="module")
def three_hours(tmp_path_factory) -> Path:
    """3 h of 8 kHz mono 16-bit WAV (173 MB), written in 10-minute blocks."""
    folder = tmp_path_factory.mktemp("long") / "audio"
    folder.mkdir()
    path = folder / "three_hours.wav"
    block = chord_tone(600.0, sr=LONG_RATE)
    with sf.SoundFile(path, "w", samplerate=LONG_RATE, channels=1, subtype="PCM_16") as handle:
        for _ in range(THREE_HOURS_S // 600):
            handle.write(block)
    return path


def measured(argv: list[str], cwd: Path, log: Path) -> tuple[int, int]:
    proc = start(argv, cwd, log)
    peak = peak_rss_of_tree(proc)
    return proc.returncode, peak


@pytest.mark.timeout(300)
def test_three_hour_file_streams_through_manifest_and_loudness_and_is_kept_from_chords(three_hours: Path) -> None:
    root = three_hours.parent.parent
    manifest = root / "long.parquet"
    code, manifest_rss = measured([sys.executable, "-m", "chordflow", "manifest", "--input", str(three_hours.parent),
                                   "--out", str(manifest), "--workers", "1", "--no-progress"], root, root / "manifest.log")
    assert code == 0, tail(root / "manifest.log")
    row = pq.read_table(manifest).to_pylist()[0]
    assert row["duration"] == THREE_HOURS_S and row["frames"] == THREE_HOURS_S * LONG_RATE

    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"loudness": {}, "chords": {}, "sharding": {"max_track_seconds": 3600}}))
    rss = {}
    for stage in ("loudness", "chords"):
        out = root / stage
        code, rss[stage] = measured([sys.executable, "-m", "tests.fault_helpers", stage, "--manifest", str(manifest),
                                     "--out", str(out), "--params", str(params), "--executor", "serial",
                                     "--no-progress"], REPO_ROOT, root / f"{stage}.log")
        assert code == 0, tail(root / f"{stage}.log")
    print(f"\n3-hour file ({three_hours.stat().st_size / 1e6:.0f} MB): peak RSS manifest {manifest_rss / 2**20:.0f} MiB,"
          f" loudness (streamed) {rss['loudness'] / 2**20:.0f} MiB, chords (too long) {rss['chords'] / 2**20:.0f} MiB")
    loudness = StageStore(root / "loudness")
    assert loudness.errors().num_rows == 0
    levels = loudness.get(loudness.track_ids()[0])["rms_db"]
    assert levels.shape == (THREE_HOURS_S * 50,) and np.isfinite(levels).all()
    errors = StageStore(root / "chords").errors().to_pylist()
    assert [e["error_type"] for e in errors] == [TOO_LONG] and "max_track_seconds" in errors[0]["reason"]
    assert manifest_rss < MANIFEST_RSS_BOUND, manifest_rss
    assert rss["loudness"] < STREAMED_LONG_RSS_BOUND, rss["loudness"]
    assert rss["chords"] < SKIPPED_LONG_RSS_BOUND + 512 * 2**20, rss["chords"]  # the plugin host, no audio
