"""Disk full and read-only output folders: a clear error, never a corrupt or partial shard.

Real filesystems, not mocks: a tiny tmpfs (``mount -t tmpfs -o size=...``) filled up to a few
KiB, and a tmpfs remounted read-only. Mounting needs root (CI and this machine run the tests as
root); elsewhere the tests skip with the reason.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline.planning import ShardingConfig
from pipeline.runner import run_stage
from tests.fault_helpers import (
    assert_matches_reference,
    assert_visible_shards_whole,
    make_manifest,
    shard_bytes,
    shard_names,
    stage_argv,
    temp_names,
    write_corpus,
    write_params,
)

TRACKS_PER_SHARD = 2
MOUNT_SIZE = "1m"
#: Room left on the "full" disk: about two shards (plus their temp copies), not the whole run.
FREE_BYTES = 20 * 1024


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A fresh 1 MiB tmpfs mounted at ``tmp_path/mnt`` (unmounted afterwards)."""
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={MOUNT_SIZE}", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): needs root")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("disk_faults")
    write_corpus(root / "audio", 10, seed=3, seconds=(2.0, 6.0))
    manifest = make_manifest(root / "audio", root / "manifest.parquet")
    params = write_params(root / "params.yaml", "loudness", backend="serial")
    report = run_stage("loudness", {}, manifest, root / "reference", ShardingConfig(TRACKS_PER_SHARD), progress=False)
    assert report.ok
    return root, manifest, params, shard_bytes(root / "reference")


def run_cli(root: Path, manifest: Path, out: Path, params: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = stage_argv("loudness", manifest, out, params, "serial", 1, TRACKS_PER_SHARD)
    return subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=120, env=env)


def fill(mount_point: Path, leave_bytes: int) -> Path:
    """Fill the filesystem until only ``leave_bytes`` are free."""
    stats = os.statvfs(mount_point)
    filler = mount_point / "filler"
    filler.write_bytes(b"\0" * max(0, stats.f_bavail * stats.f_frsize - leave_bytes))
    return filler


def assert_clear_error(result: subprocess.CompletedProcess, out: Path, reason: str) -> None:
    text = result.stdout + result.stderr
    assert result.returncode != 0, text
    assert "Traceback" not in text, f"a crash, not a clear error:\n{text}"
    assert reason in text and str(out) in text, text


def test_disk_full_gives_clear_error_and_no_corrupt_shard(corpus, tmpfs) -> None:
    root, manifest, params, reference = corpus
    out = tmpfs / "loudness"
    filler = fill(tmpfs, FREE_BYTES)
    result = run_cli(root, manifest, out, params)
    assert_clear_error(result, out, "No space left on device")
    written = shard_names(out)
    assert 0 < len(written) < len(reference), f"expected a partly written run, got {written}"
    assert_visible_shards_whole(out, "disk full")
    assert not temp_names(out), temp_names(out)
    assert all((out / name).read_bytes() == reference[name] for name in written)

    filler.unlink()  # space again: the re-run completes what is missing
    result = run_cli(root, manifest, out, params)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_matches_reference(out, reference, manifest, "after freeing space")


def test_read_only_output_folder_gives_clear_error(corpus, tmpfs) -> None:
    root, manifest, params, reference = corpus
    out = tmpfs / "loudness"
    out.mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    result = run_cli(root, manifest, out, params)
    assert_clear_error(result, out, "Read-only file system")
    assert os.listdir(out) == []


def test_complete_output_made_read_only_keeps_its_shards(corpus, tmpfs) -> None:
    root, manifest, params, reference = corpus
    out = tmpfs / "loudness"
    assert run_cli(root, manifest, out, params).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    result = run_cli(root, manifest, out, params)
    # Nothing to compute: the run succeeds without writing, or says clearly why it cannot.
    if result.returncode != 0:
        assert_clear_error(result, out, "Read-only file system")
    assert_matches_reference(out, reference, manifest, "read-only after a complete run")
