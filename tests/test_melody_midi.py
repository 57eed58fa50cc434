"""Melody controls from files: MIDI (highest note, octave folding, track/channel), .npy and .th matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REFERENCE_DIR
from stages.melody.midi import MidiMelodyError, midi_melody

FRAME_RATE = 50.0


def write_midi(path: Path, parts: list[tuple[int, list[tuple[int, float, float]]]], drums: bool = True) -> Path:
    """parts: (program, [(pitch, start, end), ...]), one instrument each; plus a drum track."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=100.0)
    for program, notes in parts:
        instrument = pretty_midi.Instrument(program=program)
        instrument.notes = [pretty_midi.Note(velocity=90, pitch=p, start=s, end=e) for p, s, e in notes]
        midi.instruments.append(instrument)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes = [pretty_midi.Note(velocity=100, pitch=96, start=t, end=t + 0.1) for t in (0.0, 0.5, 1.0)]
        midi.instruments.append(kit)
    midi.write(str(path))
    return path


@pytest.fixture
def tune(tmp_path) -> Path:
    melody = [(60, 0.0, 0.5), (64, 0.5, 1.0), (30, 1.0, 1.5), (100, 1.5, 2.0)]   # C4 E4, F#1 (low), E7 (high)
    bass = [(48, 0.0, 2.0)]                                                      # under everything
    return write_midi(tmp_path / "tune.mid", [(0, melody), (33, bass)])


def test_a_known_tune_becomes_the_expected_one_hot(tune):
    melody = midi_melody(tune, FRAME_RATE)
    expected = np.repeat(np.array([60, 64, 30 + 12 + 12, 100 - 12]) - 43, 25)   # F#1 up two octaves, E7 down one
    assert melody.index.tolist() == expected.tolist()
    assert (melody.folded_up, melody.folded_down, melody.notes) == (1, 1, 5)
    matrix = melody.matrix()
    assert matrix.shape == (100, 53) and (matrix.sum(axis=1) == 1).all()
    assert (matrix.argmax(axis=1) == expected).all()
    assert midi_melody(tune, FRAME_RATE, n_frames=120).index[100:].tolist() == [-1] * 20   # padded unvoiced


def test_track_and_channel_choose_the_line(tune, tmp_path):
    bass_only = midi_melody(tune, FRAME_RATE, track=1)
    assert set(bass_only.index.tolist()) == {48 - 43}
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(str(tune))
    assert [i.program for i in midi.instruments[:2]] == [0, 33]
    # pretty_midi writes each instrument on its own channel, in order (the drum kit on 9)
    assert set(midi_melody(tune, FRAME_RATE, channel=1).index.tolist()) == {48 - 43}
    assert midi_melody(tune, FRAME_RATE, channel=0).index[0] == 60 - 43
    with pytest.raises(MidiMelodyError, match="no track 7"):
        midi_melody(tune, FRAME_RATE, track=7)
    with pytest.raises(MidiMelodyError, match="no melodic notes on channel 5"):
        midi_melody(tune, FRAME_RATE, channel=5)


def test_bad_and_empty_files_are_clear_errors(tmp_path):
    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd not really")
    with pytest.raises(MidiMelodyError, match="not a readable MIDI file"):
        midi_melody(broken, FRAME_RATE)
    drums_only = write_midi(tmp_path / "drums.mid", [])
    with pytest.raises(MidiMelodyError, match="no melodic notes"):
        midi_melody(drums_only, FRAME_RATE)


def test_the_prompt_loader_reads_midi_npy_and_th(tune, tmp_path):
    from model.sampling.generate import ControlLoader, ReferenceConfigs

    loader = ControlLoader(ReferenceConfigs(), FRAME_RATE)
    matrix = loader.melody(tune)
    assert matrix.shape == (100, 53) and loader.melody_reports[str(tune)]["folded_up"] == 1
    np.save(tmp_path / "m.npy", matrix)
    torch.save(torch.from_numpy(matrix), tmp_path / "m.th")
    assert np.array_equal(loader.melody(tmp_path / "m.npy"), matrix)
    assert np.array_equal(loader.melody(tmp_path / "m.th"), matrix)
    torch.save({"not": "a tensor", "f": np.zeros}, tmp_path / "evil.th")
    with pytest.raises(ValueError, match="refused"):
        loader.melody(tmp_path / "evil.th")
    shipped = REFERENCE_DIR / "jasco" / "salience_1.th"
    if shipped.is_file():   # JASCO's authors' own file: weights-only loading reads it
        assert np.array_equal(loader.melody(shipped), np.load(REFERENCE_DIR / "jasco" / "salience_1.npy"))


def test_a_prompt_with_chords_by_bars_and_a_midi_melody_generates(tune, tmp_path):
    """One JSONL line, musician-native controls, through ``chordflow generate`` (tiny JASCO fixture)."""
    import json

    import yaml

    from chordflow.cli import main
    from jasco_fixture import Fixture, require_fixture

    fixture = Fixture(require_fixture("tiny_cdm"))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "waltz", "description": "jazz trio", "duration": 2.0,
                                   "chords": "C | G7", "bpm": 120, "melody": tune.name}) + "\n")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"generate": {"solver": "euler", "steps": 1}}))
    out = tmp_path / "out"
    assert main(["generate", "--checkpoint", str(fixture.folder), "--t5", str(fixture.folder / "hf_t5"),
                 "--prompts", str(prompts), "--out", str(out), "--params", str(params), "--no-progress"]) == 0
    clip = json.loads((out / "report.json").read_text())["clips"][0]
    assert clip["chords"] == [["C", 0.0], ["G7", 2.0]]
    assert clip["melody_source"]["folded_up"] == 1 and clip["melody_source"]["folded_down"] == 1
    stored = np.load(out / clip["melody"])
    assert stored.shape == (100, 53) and stored[:25].argmax(axis=1).tolist() == [17] * 25
