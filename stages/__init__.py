"""chordflow feature stages (one module or package per stage), registered by name on import.

The registry holds "module:Class" strings, so importing this package imports no stage module (and
no TensorFlow, Demucs or torch): a stage's module is imported when the stage is built. The
``chordflow.stages`` entry point (``pyproject.toml``) names this package, so processes that never
import it find the built-in stages too.
"""

from pipeline.stage import register_stage

#: name -> "module:Class" of every built-in stage.
BUILTIN_STAGES: dict[str, str] = {
    "loudness": "stages.loudness:LoudnessExtractor",
    "chords": "stages.chords:ChordsExtractor",
    "melody": "stages.melody:MelodyExtractor",
    "drums": "stages.drums:DrumsExtractor",
    "latents": "stages.latents:LatentsExtractor",
}

for _name, _target in BUILTIN_STAGES.items():
    register_stage(_name, _target)
