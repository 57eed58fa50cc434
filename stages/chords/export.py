"""``chordflow chords export-audiocraft``: write extracted chords in AudioCraft's JASCO layout.

For users migrating to (or comparing with) AudioCraft's ``JascoDataset``, which reads two pickles
from its dataset root:

* ``chords_per_track.pkl``: ``{file stem: [(label, start_s), ...]}`` (each chord lasts until the
  next change), keyed like AudioCraft does, by the audio file name without folders and extension;
* ``chord_to_index_mapping.pkl``: ``{label: index}``.

Labels are written as the vocabulary resolves them, so every exported label is in the exported
mapping. This is the only place chordflow writes pickles; it never reads them.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from pipeline.atomic import atomic_write_bytes
from stages.chords.vocab import Vocabulary

CHORDS_FILENAME = "chords_per_track.pkl"
MAPPING_FILENAME = "chord_to_index_mapping.pkl"
#: Protocol 4 is readable by every Python that AudioCraft supports.
PICKLE_PROTOCOL = 4


def audiocraft_key(path: str) -> str:
    """AudioCraft's track key: ``path.split('/')[-1].split('.')[0]``."""
    return path.split("/")[-1].split(".")[0]


def export_audiocraft(features_dir: str | Path, out_dir: str | Path, vocabulary: Vocabulary | None = None) -> dict[str, int]:
    """Write the two pickles into ``out_dir``. Returns counts (tracks, changes, unknown labels).

    Raises:
        ValueError: two tracks share a key (same file stem in different folders).
    """
    from pipeline.reader import StageStore
    from stages.chords.stage import ChordsConfig

    store = StageStore(features_dir)
    if vocabulary is None:
        vocabulary = Vocabulary.load(store.config(ChordsConfig).vocabulary)
    vocabulary.reset_counts()
    chords: dict[str, list[tuple[str, float]]] = {}
    owner: dict[str, str] = {}
    for row in store:
        key = audiocraft_key(row["path"])
        if key in chords:
            raise ValueError(f"{row['path']} and {owner[key]} share the AudioCraft key {key!r}; "
                             "AudioCraft keys tracks by file stem, rename one of them")
        owner[key] = row["path"]
        chords[key] = [(vocabulary.resolve(seg["label"]), float(seg["start"])) for seg in row["timeline"]]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / CHORDS_FILENAME, pickle.dumps(chords, protocol=PICKLE_PROTOCOL))
    atomic_write_bytes(out / MAPPING_FILENAME, pickle.dumps(vocabulary.mapping(), protocol=PICKLE_PROTOCOL))
    return {"tracks": len(chords), "changes": sum(len(v) for v in chords.values()),
            "unknown": sum(vocabulary.unknown.values())}
