"""Stage params read back from shards as typed configs, params files read once, typed stage building."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.arrays import coerce_value
from pipeline.config import ConfigError, config_to_dict, read_params_if_present
from pipeline.reader import StageStore, StoreError
from pipeline.stage import FeatureSpec, create_stage
from pipeline.store import StageInfo, write_shard
from stages.chords.stage import ChordsConfig
from stages.drums.config import DrumsConfig
from stages.latents.config import LatentsConfig

SPEC = FeatureSpec("index", "int16", (None,), 50.0)


def write_store(folder, stage: str, params: dict) -> StageStore:
    """One shard of one track whose metadata records ``params`` as the stage's params."""
    row = {"track_id": "t0", "path": "a/0.wav", "index": coerce_value(SPEC, np.zeros(3, dtype=np.int16))}
    write_shard(folder, 0, StageInfo(stage, "1", "hash", (SPEC,), params), ["t0"], [row])
    return StageStore(folder)


def test_the_params_a_stage_records_parse_back_as_its_config(tmp_path):
    chords = create_stage("chords", {"vocabulary": "custom.json", "refine": {"enabled": False}})
    store = write_store(tmp_path / "chords", "chords", config_to_dict(chords.config))  # as the runner records them
    assert store.config(ChordsConfig) == chords.config
    latents = LatentsConfig(codec="logspec_griffinlim", drums_dir="data/drums")
    assert write_store(tmp_path / "latents", "latents", config_to_dict(latents)).config(LatentsConfig) == latents


def test_keys_left_out_take_the_config_defaults(tmp_path):
    store = write_store(tmp_path / "chords", "chords", {})
    assert store.config(ChordsConfig) == ChordsConfig()


@pytest.mark.parametrize("stage, params, cls, what", [
    ("chords", {"vocabulary": "jasco", "vocabluary": "x"}, ChordsConfig, "unknown key"),  # a key the config lacks
    ("chords", config_to_dict(ChordsConfig()), LatentsConfig, "unknown key"),            # another stage's folder
    ("latents", {"codec": 3}, LatentsConfig, "expected str"),
])
def test_params_that_do_not_parse_are_a_store_error_naming_the_folder(tmp_path, stage, params, cls, what):
    folder = tmp_path / "features"
    store = write_store(folder, stage, params)
    with pytest.raises(StoreError, match=what) as info:
        store.config(cls)
    assert str(folder) in str(info.value) and f"do not parse as {cls.__name__}" in str(info.value)


def test_a_missing_params_file_reads_as_empty_and_a_bad_one_is_an_error(tmp_path):
    assert read_params_if_present(tmp_path / "absent.yaml") == {}
    given = tmp_path / "params.yaml"
    given.write_text("drums: {separator: hpss}\n")
    assert read_params_if_present(given) == {"drums": {"separator": "hpss"}}
    given.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_params_if_present(given)
    with pytest.raises(ConfigError, match="not found"):  # a folder is not a params file
        read_params_if_present(tmp_path)


def test_create_stage_takes_an_already_parsed_config():
    config = DrumsConfig(sample_rate=16000)
    stage = create_stage("drums", config)
    assert stage.config is config
    assert stage.params_hash == create_stage("drums", {"sample_rate": 16000}).params_hash
    with pytest.raises(TypeError, match="DrumsConfig, not a ChordsConfig"):
        create_stage("drums", ChordsConfig())
    assert dataclasses.is_dataclass(create_stage("drums", None).config)


def test_commands_parse_the_stage_sections_once_into_typed_configs(tmp_path):
    from model.evaluation.config import AnalyserConfigs, ModelEvalConfig, eval_settings
    from model.sampling.generate import ReferenceConfigs
    from stages.melody.config import MelodyConfig

    params = {"drums": {"sample_rate": 16000}, "melody": {"threshold": 0.4}, "model_eval": {"chord_metric": "root"}}
    drums, melody = DrumsConfig(sample_rate=16000), MelodyConfig(threshold=0.4)
    config, stages = eval_settings(params)
    assert config == ModelEvalConfig(chord_metric="root") and stages == AnalyserConfigs(melody=melody, drums=drums)
    assert ReferenceConfigs.from_params(params) == ReferenceConfigs(drums=drums, melody=melody)
    assert eval_settings(tmp_path / "absent.yaml") == (ModelEvalConfig(), AnalyserConfigs())
    with pytest.raises(ConfigError, match="chords: unknown key"):  # before any clip is read
        eval_settings({"chords": {"vocabluary": "jasco"}})
