"""`chordflow melody fetch-weights`: download the original DeepSalience weights, checked by SHA-256.

Files come from the original repository's raw URLs (any ``base_url`` that urllib opens works,
including ``file://`` and a local HTTP mirror). Each download is streamed to a hidden temp file,
hashed, and renamed into place only if the hash matches the published one, so a partial or
tampered file never ends up where the stage looks for weights.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable

from pipeline.atomic import atomic_path, atomic_write_text
from stages.melody.constants import MODEL_NAMES, ORIGINAL_REPOSITORY, WEIGHT_SHA256, WEIGHTS_BASE_URL

log = logging.getLogger(__name__)

READ_BLOCK = 1 << 16
SOURCE_NOTE = "SOURCE.txt"


class FetchError(RuntimeError):
    """A weight file could not be downloaded, or its SHA-256 does not match."""


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(READ_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_weights(dest: str | Path, base_url: str = WEIGHTS_BASE_URL, models: Iterable[str] = MODEL_NAMES,
                  timeout: float = 60.0, force: bool = False) -> list[Path]:
    """Download ``<base_url>/<model>.h5`` for each model into ``dest``; returns the file paths.

    A file already in ``dest`` with the right hash is kept (unless ``force``).

    Raises:
        FetchError: a download failed or a file's SHA-256 is not the published one.
    """
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for model in models:
        if model not in WEIGHT_SHA256:
            raise FetchError(f"unknown DeepSalience model {model!r}; choose from {', '.join(MODEL_NAMES)}")
        target = dest / f"{model}.h5"
        expected = WEIGHT_SHA256[model]
        if target.is_file() and not force and sha256_of(target) == expected:
            log.info("%s: present, checksum ok", target)
            paths.append(target)
            continue
        url = f"{base_url.rstrip('/')}/{model}.h5"
        _download_verified(url, target, expected, timeout)
        log.info("%s: downloaded from %s, checksum ok", target, url)
        paths.append(target)
    atomic_write_text(dest / SOURCE_NOTE, _source_note(base_url))
    return paths


def _download_verified(url: str, target: Path, expected: str, timeout: float) -> None:
    digest = hashlib.sha256()
    with atomic_path(target) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                for block in iter(lambda: response.read(READ_BLOCK), b""):
                    digest.update(block)
                    out.write(block)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise FetchError(f"{url}: download failed ({exc}); check the network, or copy the file "
                             f"from {ORIGINAL_REPOSITORY} (predict/weights/) to {target}") from exc
        if digest.hexdigest() != expected:
            # raising inside atomic_path removes the temp file and leaves `target` untouched
            raise FetchError(f"{url}: SHA-256 mismatch for {target.name}: got {digest.hexdigest()}, "
                             f"expected {expected}; the file was not saved")


def _source_note(base_url: str) -> str:
    sums = "".join(f"{WEIGHT_SHA256[m]}  {m}.h5\n" for m in MODEL_NAMES)
    return (
        "DeepSalience pretrained weights (Bittner, McFee, Salamon, Li, Bello: Deep Salience\n"
        "Representations for F0 Estimation in Polyphonic Music, ISMIR 2017).\n"
        f"Source: {ORIGINAL_REPOSITORY} (predict/weights/), fetched from {base_url}\n"
        "License: MIT, Copyright (c) 2017 Rachel Bittner (see the LICENSE file of that repository).\n"
        f"SHA-256:\n{sums}"
    )
