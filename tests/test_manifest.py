"""pipeline.manifest: good rows, every reject kind, stable ids, determinism, lists, CLI, crashes,
audio recognised by content in any container (WebM, MP4, Matroska), hidden entries skipped."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess

import numpy as np
import pytest

import chordflow.cli
import pipeline.manifest
from pipeline.audio import load_audio
from pipeline.audio_sniff import sniff_file
from pipeline.manifest import (
    MANIFEST_SCHEMA,
    REJECT_ERROR_TYPES,
    REJECTS_SCHEMA,
    ManifestError,
    build_manifest,
    read_manifest,
    read_rejects,
    rejects_path,
    write_manifest,
)
from pipeline import manifest_pool
from pipeline.manifest_pool import map_isolated
from pipeline.manifest_scan import ManifestInputError, make_track_id, slugify

RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

GOOD = {  # name -> (format, sample rate, channels, tone frequency); every file has distinct content
    "a.wav": ("wav", 22050, 1, 330.0),
    "b.flac": ("flac", 44100, 2, 440.0),
    "c.mp3": ("mp3", 32000, 2, 550.0),
    "d.ogg": ("ogg", 48000, 1, 660.0),
    "e.m4a": ("m4a", 44100, 2, 770.0),
    "sub/deeper/f.wav": ("wav", 8000, 1, 880.0),
    "flac_named.wav": ("flac", 16000, 1, 990.0),  # real FLAC behind a .wav name: accepted
}
EXPECTED_REJECTS = {
    "corrupt.flac": "corrupt",
    "truncated.wav": "truncated",
    "empty.wav": "empty",
    "zero.wav": "zero_length",
    "notes.wav": "not_audio",
    "copy_of_a.wav": "duplicate",
    "locked.wav": "unreadable",
    "readme.txt": "not_audio",  # scanned like every file, rejected by its content
}
#: Hidden entries in ``data_dir``: skipped by the scan, counted in the summary.
DATA_HIDDEN = (".DS_Store",)


@pytest.fixture
def data_dir(tmp_path, make_audio):
    """A folder with good tracks and one file for each kind of reject."""
    for name, (fmt, rate, channels, freq) in GOOD.items():
        make_audio(f"data/{name}", fmt, rate, channels, seconds=0.5, freq=freq)
    data = tmp_path / "data"
    (data / "corrupt.flac").write_bytes(b"fLaC" + bytes(range(256)) * 8)
    long_wav = make_audio("data/truncated.wav", "wav", 22050, 2, seconds=1.0, freq=1100.0).read_bytes()
    (data / "truncated.wav").write_bytes(long_wav[: len(long_wav) // 2])
    (data / "empty.wav").touch()
    make_audio("data/zero.wav", "wav", data=np.zeros((0, 1), dtype=np.float32))
    (data / "notes.wav").write_text("these are notes, not audio\n" * 10)
    shutil.copyfile(data / "a.wav", data / "copy_of_a.wav")
    (data / "readme.txt").write_text("a text file among the tracks\n")
    (data / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    _make_unreadable(data / "locked.wav", make_audio)
    return data


def _make_unreadable(path, make_audio):
    """chmod 000 does not stop root (tests run as root in CI), so root gets a dangling symlink,
    which is just as unreadable; other users get a real file without read permission."""
    if RUNNING_AS_ROOT:
        path.symlink_to(path.with_name("deleted-target.wav"))
    else:
        make_audio(os.path.relpath(path, path.parents[1]), "wav", freq=1200.0)
        path.chmod(0)


def _by_name(table, root):
    """Rows keyed by their path relative to ``root``."""
    return {os.path.relpath(row["path"], root): row for row in table.to_pylist()}


def test_folder_scan_keeps_good_tracks_and_types_every_reject(data_dir):
    manifest, rejects = build_manifest([data_dir], workers=1)
    assert manifest.schema.equals(MANIFEST_SCHEMA, check_metadata=False)
    assert rejects.schema.equals(REJECTS_SCHEMA, check_metadata=False)
    rows = _by_name(manifest, data_dir)
    assert sorted(rows) == sorted(GOOD)
    for name, (fmt, rate, channels, _) in GOOD.items():
        row = rows[name]
        path = data_dir / name
        assert (row["sample_rate"], row["channels"]) == (rate, channels)
        assert row["duration"] == pytest.approx(0.5) and row["frames"] == rate // 2
        assert row["size"] == path.stat().st_size and row["mtime"] == path.stat().st_mtime
        assert row["content_hash"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert row["track_id"] == make_track_id(str(path), str(data_dir))
    assert (rows["flac_named.wav"]["codec"], rows["flac_named.wav"]["container"]) == ("flac", "flac")
    assert rows["e.m4a"]["codec"] == "aac" and rows["c.mp3"]["container"] == "mp3"

    found = {os.path.basename(r["path"]): r for r in rejects.to_pylist()}
    assert {name: r["error_type"] for name, r in found.items()} == EXPECTED_REJECTS
    assert set(EXPECTED_REJECTS.values()) <= REJECT_ERROR_TYPES
    assert found["copy_of_a.wav"]["reason"] == f"duplicate content of {data_dir / 'a.wav'}"
    assert found["truncated.wav"]["reason"].startswith("truncated")
    assert "not an audio file" in found["notes.wav"]["reason"]
    assert found["locked.wav"]["reason"].startswith("unreadable")


def test_rerun_and_parallel_run_are_byte_identical(data_dir, tmp_path):
    outputs = []
    for run, workers in enumerate((1, 1, 2)):
        out = tmp_path / f"run{run}" / "songs.parquet"
        write_manifest(*build_manifest([data_dir], workers=workers), out)
        outputs.append((out.read_bytes(), rejects_path(out).read_bytes()))
    assert outputs[0] == outputs[1] == outputs[2]
    assert read_manifest(tmp_path / "run0" / "songs.parquet").num_rows == len(GOOD)
    assert read_rejects(tmp_path / "run0" / "songs.parquet").num_rows == len(EXPECTED_REJECTS)


def test_track_ids_survive_moving_the_data_and_changing_cwd(data_dir, tmp_path, monkeypatch):
    first_run = build_manifest([data_dir], workers=1)[0]
    original = {name: row["track_id"] for name, row in _by_name(first_run, data_dir).items()}
    moved = tmp_path / "elsewhere" / "renamed"
    # locked.wav is unreadable for non-root users, and rejected anyway.
    shutil.copytree(data_dir, moved, symlinks=True, ignore=shutil.ignore_patterns("locked.wav"))
    monkeypatch.chdir(moved.parent)
    relative_run = build_manifest(["renamed"], workers=1)[0].to_pylist()
    assert all(not os.path.isabs(row["path"]) and row["path"].startswith("renamed/") for row in relative_run)
    moved_ids = {os.path.relpath(row["path"], "renamed"): row["track_id"] for row in relative_run}
    assert moved_ids == original
    assert original["sub/deeper/f.wav"].startswith("f-")
    absolute_run = build_manifest([moved], workers=1)[0].to_pylist()
    assert all(os.path.isabs(row["path"]) for row in absolute_run)
    assert sorted(row["track_id"] for row in absolute_run) == sorted(original.values())
    # A sub-folder alone gets ids relative to itself, unless --root names the common folder.
    sub_only = build_manifest(["renamed/sub"], workers=1)[0].column("track_id").to_pylist()
    assert sub_only != [original["sub/deeper/f.wav"]]
    rooted = build_manifest(["renamed/sub"], workers=1, root="renamed")[0].column("track_id").to_pylist()
    assert rooted == [original["sub/deeper/f.wav"]]


def test_track_id_rule():
    assert make_track_id("/x/data/Song One (Live).wav", "/x/data") == (
        "song-one-live-" + hashlib.sha1(b"Song One (Live).wav").hexdigest()[:10])
    assert make_track_id("data/a/b.flac", "data") == make_track_id("/elsewhere/data/a/b.flac", "/elsewhere/data")
    assert make_track_id("data/a/b.flac", "data") != make_track_id("data/c/b.flac", "data")
    assert slugify("Ünïcödé — ßong!") == "unicode-ong" and slugify("???") == "track"


def test_text_and_jsonl_lists(data_dir, tmp_path, caplog):
    lists = tmp_path / "lists"
    lists.mkdir()
    shutil.copyfile(data_dir / "a.wav", lists / "raw_take.bin")  # any extension, if listed explicitly
    (lists / "folder.wav").mkdir()  # a directory where a file is expected: unreadable
    (lists / "tracks.txt").write_text(
        "# comment line\n"
        "../data/b.flac\n"
        "\n"
        "raw_take.bin\n"
        f"{data_dir / 'c.mp3'}\n"
        "../data/not-there.wav\n"
        "folder.wav\n"
    )
    (lists / "train.jsonl").write_text(
        json.dumps({"path": "../data/d.ogg", "duration": 0.5, "sample_rate": 48000}) + "\n"
        + json.dumps({"path": "../data/sub/deeper/f.wav", "duration": 9.0, "sample_rate": 8000}) + "\n"
    )
    with caplog.at_level("WARNING"):
        manifest, rejects = build_manifest([lists / "tracks.txt", lists / "train.jsonl"], workers=1)
    kept = sorted(os.path.basename(p) for p in manifest.column("path").to_pylist())
    assert kept == ["b.flac", "c.mp3", "d.ogg", "f.wav", "raw_take.bin"]
    assert {os.path.basename(r["path"]): r["error_type"] for r in rejects.to_pylist()} == {
        "not-there.wav": "missing", "folder.wav": "unreadable"}
    assert "duration=9.0" in caplog.text and "d.ogg" not in caplog.text
    # Relative entries are resolved against the list's folder (not the cwd) and normalised.
    assert str(data_dir / "b.flac") in manifest.column("path").to_pylist()


def test_same_file_from_two_inputs_is_kept_once(data_dir, tmp_path):
    (tmp_path / "one.txt").write_text("data/a.wav\n")
    manifest, rejects = build_manifest([data_dir / "a.wav", tmp_path / "one.txt"], workers=1)
    assert manifest.num_rows == 1 and rejects.num_rows == 0


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ManifestInputError, match="nowhere: input not found"):
        build_manifest([tmp_path / "nowhere"], workers=1)
    (tmp_path / "bad.jsonl").write_text('{"no_path": 1}\n')
    with pytest.raises(ManifestInputError, match=r"bad.jsonl:1: .*\"path\""):
        build_manifest([tmp_path / "bad.jsonl"], workers=1)


def test_read_manifest_refuses_other_files(data_dir, tmp_path):
    out = tmp_path / "m.parquet"
    write_manifest(*build_manifest([data_dir / "a.wav"], workers=1), out)
    with pytest.raises(ManifestError, match="expected a chordflow manifest"):
        read_manifest(rejects_path(out))
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "absent.parquet")
    (tmp_path / "junk.parquet").write_text("junk")
    with pytest.raises(ManifestError, match="not a readable Parquet"):
        read_manifest(tmp_path / "junk.parquet")
    with pytest.raises(ValueError, match=r"\.parquet"):
        write_manifest(*build_manifest([data_dir / "a.wav"], workers=1), tmp_path / "m.csv")


def test_cli_end_to_end(data_dir, tmp_path, monkeypatch, capsys):
    # Only this module's subcommand: the test must not depend on other subcommands' modules.
    monkeypatch.setattr(chordflow.cli, "CLI_MODULES", ("pipeline.manifest",))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("manifest:\n  workers: 2\n")
    code = chordflow.cli.main(["manifest", "--input", "data", "--out", "manifests/songs.parquet", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    seen = len(GOOD) + len(EXPECTED_REJECTS)
    assert f"{seen} files -> {len(GOOD)} tracks" in out and f"{len(EXPECTED_REJECTS)} rejected" in out
    assert "duplicate 1" in out and f"; {len(DATA_HIDDEN)} hidden entries skipped" in out
    manifest = read_manifest("manifests/songs.parquet")
    assert manifest.num_rows == len(GOOD) and manifest.column("path").to_pylist()[0].startswith("data/")
    metadata = manifest.schema.metadata
    assert metadata[b"chordflow.kind"] == b"manifest"
    assert json.loads(metadata[b"chordflow.params"])["inputs"] == ["data"]

    (tmp_path / "params.yaml").write_text("manifest:\n  wrokers: 2\n")  # typo: a clear error
    assert chordflow.cli.main(["manifest", "-i", "data", "-o", "manifests/x.parquet"]) == 2
    assert "wrokers" in capsys.readouterr().err
    (tmp_path / "other.yaml").write_text("{}\n")
    assert chordflow.cli.main(["manifest", "-i", "missing_dir", "-o", "manifests/x.parquet", "--params",
                              "other.yaml"]) == 2
    assert "missing_dir: input not found" in capsys.readouterr().err


def _double_or_crash(value: int) -> int:
    """Picklable test worker: value 3 kills its process as a crashing C decoder would.

    Only inside a worker process: if the pool ever fell back to running in the test process,
    the test must fail, not kill pytest.
    """
    if value == 3 and multiprocessing.parent_process() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return value * 2


def test_pool_survives_a_worker_crash():
    items = list(range(10))
    results = map_isolated(_double_or_crash, items, workers=2, on_crash=lambda value: f"crashed {value}")
    assert results == [0, 2, 4, "crashed 3", 8, 10, 12, 14, 16, 18]
    assert map_isolated(_double_or_crash, [1, 2], workers=1, on_crash=str) == [2, 4]


def test_pool_falls_back_to_this_process_when_workers_cannot_start(monkeypatch, caplog):
    class NoProcesses:
        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            return False

        def submit(self, *args):
            raise OSError("no processes allowed here")

    monkeypatch.setattr(manifest_pool, "_new_pool", lambda workers: NoProcesses())
    with caplog.at_level("WARNING"):
        assert map_isolated(abs, [-1, -2, 3], workers=2, on_crash=str) == [1, 2, 3]
    assert "continuing in this process" in caplog.text


# ----------------------------------------------------------------------------- any container, by content

TONE_S = 1.0
#: Audio in containers that an extension list misses: name -> (ffmpeg codec arguments, codec, container, Hz).
CONTAINERS = {
    "tone.webm": (("-c:a", "libopus"), "opus", "matroska", 440.0),
    "tone.mp4": (("-c:a", "aac"), "aac", "mp4", 550.0),
    "tone.mka": (("-c:a", "flac"), "flac", "matroska", 660.0),
}
#: The other files of the mixed folder: name -> (error type, words of the reason).
MIXED_REJECTS = {
    "notes.txt": ("not_audio", "the content is text"),
    "cover.png": ("not_audio", "the content is a PNG image"),
    "video_only.mp4": ("not_audio", "a video (mp4) without an audio stream"),
    "pipe": ("unreadable", "not a regular file (a named pipe)"),
}
MIXED_HIDDEN = (".DS_Store", ".git", "._tone.webm")
#: Hz a spectrum peak may be off by (1 s of audio: 1 Hz bins).
PEAK_TOLERANCE_HZ = 2.0


def _lavfi(target, source: str, *args: str) -> None:
    """Write ``target`` with ffmpeg from a lavfi test source (skips without ffmpeg)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg binary not installed")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, *args,
                    str(target)], check=True)


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory):
    """WebM/MP4/Matroska audio without a usual audio extension, non-audio files, hidden entries."""
    folder = tmp_path_factory.mktemp("mixed") / "media"
    folder.mkdir()
    for name, (codec_args, _, _, freq) in CONTAINERS.items():
        _lavfi(folder / name, f"sine=frequency={freq}:duration={TONE_S}", *codec_args)
    _lavfi(folder / "cover.png", "color=c=red:size=16x16", "-frames:v", "1")
    _lavfi(folder / "video_only.mp4", "testsrc=duration=1:size=64x64:rate=10", "-c:v", "mpeg4")
    (folder / "notes.txt").write_text("liner notes\n")
    os.mkfifo(folder / "pipe")  # opening it would block: must be rejected without being opened
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[core]\n")
    (folder / "._tone.webm").write_bytes(b"\0\5\26\7AppleDouble resource fork")
    return folder


def test_folder_scan_recognises_audio_by_content_in_any_container(mixed_dir):
    manifest, rejects = build_manifest([mixed_dir], workers=1)
    rows = _by_name(manifest, mixed_dir)
    assert sorted(rows) == sorted(CONTAINERS)
    found = {os.path.basename(r["path"]): r for r in rejects.to_pylist()}
    assert {name: r["error_type"] for name, r in found.items()} == {n: t for n, (t, _) in MIXED_REJECTS.items()}
    for name, (_, words) in MIXED_REJECTS.items():
        assert words in found[name]["reason"], found[name]
    assert pipeline.manifest.hidden_skipped(rejects) == len(MIXED_HIDDEN)
    for name, (_, codec, container, freq) in CONTAINERS.items():
        row = rows[name]
        assert (row["codec"], row["container"]) == (codec, container)
        assert row["duration"] == pytest.approx(TONE_S, abs=0.01)
        # What the stages do with a manifest row: decode it with load_audio.
        samples, rate = load_audio(row["path"])
        assert rate == row["sample_rate"] and samples.shape == (row["channels"], row["frames"])
        peak_hz = np.argmax(np.abs(np.fft.rfft(samples[0]))) * rate / samples.shape[1]
        assert peak_hz == pytest.approx(freq, abs=PEAK_TOLERANCE_HZ), name
        resampled, _ = load_audio(row["path"], sample_rate=22050, channels=2)
        assert resampled.shape == (2, round(row["frames"] * 22050 / rate))


@pytest.mark.parametrize("head, kind", [
    (b"\x89PNG\r\n\x1a\n" + bytes(32), "a PNG image"),
    (b"\xff\xd8\xff\xe0" + bytes(32), "a JPEG image"),
    (b"%PDF-1.7\n", "a PDF document"),
    (b"PK\x03\x04" + bytes(32), "a ZIP archive (or a document packed as one)"),
    (b"MThd\x00\x00\x00\x06", "a MIDI file (notes, not audio)"),
    (b"\x00\x00\x00\x18ftypheic" + bytes(16), "a HEIF/AVIF image"),
    ("chords: C G Am F — ♫\n".encode(), "text"),
    ("notes: café\r\n".encode("latin-1"), "text"),
    (bytes(range(256)), None),  # unknown binary: may be a format only FFmpeg knows, so it is probed
], ids=["png", "jpeg", "pdf", "zip", "midi", "heic", "utf8-text", "latin1-text", "unknown-binary"])
def test_sniff_says_what_non_audio_content_is(tmp_path, head, kind):
    path = tmp_path / "file.bin"
    path.write_bytes(head)
    sniffed = sniff_file(path)
    assert (sniffed.container, sniffed.looks_like) == ("unknown", kind)


def test_cli_summary_adds_up_files_tracks_rejects_and_hidden(mixed_dir, tmp_path, make_audio, monkeypatch, capsys):
    monkeypatch.setattr(chordflow.cli, "CLI_MODULES", ("pipeline.manifest",))
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    good = make_audio("more/tone.wav", freq=880.0)
    try:
        os.rename(good, os.fsencode(good.parent) + b"/caf\xe9.wav")  # a Latin-1 name: not UTF-8
    except OSError as exc:
        pytest.skip(f"this file system refuses names that are not UTF-8: {exc}")
    argv = ["manifest", "-i", str(mixed_dir), "more", "-o", "m.parquet", "--workers", "1", "--no-progress"]
    assert chordflow.cli.main(argv) == 0
    seen = len(CONTAINERS) + len(MIXED_REJECTS) + 1
    assert (f"manifest: {seen} files -> {len(CONTAINERS)} tracks (0.00 h), {len(MIXED_REJECTS) + 1} rejected: "
            f"bad_file_name 1, not_audio 3, unreadable 1; {len(MIXED_HIDDEN)} hidden entries skipped -> m.parquet"
            ) in capsys.readouterr().out
    assert read_rejects("m.parquet").num_rows == len(MIXED_REJECTS) + 1


def test_a_subfolder_that_cannot_be_listed_is_a_reject_not_a_silent_gap(tmp_path, make_audio, monkeypatch):
    make_audio("music/a.wav")
    make_audio("music/locked/b.wav")
    locked = os.path.normpath(tmp_path / "music" / "locked")
    listing = os.scandir

    def scandir(path="."):  # as for a folder without read permission (root ignores chmod)
        if os.path.normpath(os.fspath(path)) == locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    table, rejects = build_manifest([tmp_path / "music"], workers=1)
    assert [os.path.basename(p) for p in table.column("path").to_pylist()] == ["a.wav"]
    rows = rejects.to_pylist()
    assert len(rows) == 1 and rows[0]["path"].endswith("locked") and rows[0]["error_type"] == "unreadable"
