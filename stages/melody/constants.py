"""The numbers of DeepSalience (Bittner et al., ISMIR 2017) and of JASCO's melody condition.

Each is defined here once; everything else in ``stages.melody`` imports them.
"""

from __future__ import annotations

import math

# ----------------------------------------------------------------------------- HCQT input
#: DeepSalience analyses audio at this rate (Hz), mono.
SAMPLE_RATE: int = 22050
#: CQT hop in samples; one salience frame every 256 samples.
HOP_LENGTH: int = 256
#: Salience frame rate, 86.1328... fps. Never round it to 86: over 10 minutes that drifts by 0.9 s.
SALIENCE_FRAME_RATE: float = SAMPLE_RATE / HOP_LENGTH
#: Lowest CQT bin centre (Hz), C1.
FMIN: float = 32.7
BINS_PER_OCTAVE: int = 60
N_OCTAVES: int = 6
#: Frequency bins of the HCQT and of the salience map (20 cents apart).
N_BINS: int = BINS_PER_OCTAVE * N_OCTAVES
#: One CQT per harmonic, each starting at ``FMIN * h``.
HARMONICS: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
#: How the HCQT is computed (``melody.hcqt``, :mod:`stages.melody.hcqt`): one CQT per harmonic as the
#: original, or one CQT shared by the harmonics an octave apart.
HCQT_METHODS: tuple[str, ...] = ("shared_octaves", "per_harmonic")
#: ``amplitude_to_db`` floor below the track maximum; the log-HCQT is ``dB / TOP_DB + 1`` in [0, 1].
TOP_DB: float = 80.0

# ----------------------------------------------------------------------------- network
#: The seven pretrained tasks of the original repository, one weight file each.
MODEL_NAMES: tuple[str, ...] = ("bass", "melody1", "melody2", "melody3", "multif0", "pitch", "vocal")
#: Keras BatchNormalization default epsilon (Keras 2.0.6 and Keras 3 agree).
BN_EPSILON: float = 1e-3
#: Conv layers in order: (name in the weight file, filters, kernel (freq, time), activation).
CONV_LAYERS: tuple[tuple[str, int, tuple[int, int], str], ...] = (
    ("bendy1", 128, (5, 5), "relu"),
    ("bendy2", 64, (5, 5), "relu"),
    ("smoothy1", 64, (3, 3), "relu"),
    ("smoothy2", 64, (3, 3), "relu"),
    ("distribute", 8, (70, 3), "relu"),
    ("squishy", 1, (1, 1), "sigmoid"),
)
#: Numeric precisions of the torch backend (``melody.precision``): float32 is the reference.
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")
#: Input channels of the network: one per harmonic.
N_INPUT_CHANNELS: int = len(HARMONICS)
#: Frames on each side of an output frame that can influence it: with `same` padding each
#: time-kernel of width k reaches (k - 1) // 2 frames out, and the reaches add up: 2+2+1+1+1+0 = 7.
TIME_RECEPTIVE_RADIUS: int = sum((kernel[1] - 1) // 2 for _, _, kernel, _ in CONV_LAYERS)
#: Bins below an output bin that can influence it: `same` padding puts (k - 1) // 2 of a k-tall
#: kernel's rows below (34 of the 70-tall one), and the reaches add up: 2+2+1+1+34+0 = 40.
FREQUENCY_REACH_BELOW: int = sum((kernel[0] - 1) // 2 for _, _, kernel, _ in CONV_LAYERS)
#: Multiply-accumulates of the network per salience frame (all 360 bins), 145.9 M.
MACS_PER_FRAME: int = N_BINS * sum(
    filters * kernel[0] * kernel[1] * fan_in
    for (_, filters, kernel, _), fan_in in zip(
        CONV_LAYERS, (N_INPUT_CHANNELS,) + tuple(layer[1] for layer in CONV_LAYERS[:-1])
    )
)
#: ... and per second of audio, 12.6 G.
MACS_PER_AUDIO_SECOND: float = MACS_PER_FRAME * SALIENCE_FRAME_RATE

# ----------------------------------------------------------------------------- weights
#: Environment variable naming the weight folder (overrides the default, not params.yaml).
WEIGHTS_ENV: str = "CHORDFLOW_DEEPSALIENCE_WEIGHTS"
#: Where `chordflow melody fetch-weights` puts the files when nothing else is configured.
DEFAULT_WEIGHTS_DIR: str = "~/.cache/chordflow/deepsalience"
#: The original repository (MIT licence, Rachel Bittner 2017) and its raw file URL prefix.
ORIGINAL_REPOSITORY: str = "https://github.com/rabitt/ismir2017-deepsalience"
WEIGHTS_BASE_URL: str = "https://raw.githubusercontent.com/rabitt/ismir2017-deepsalience/master/predict/weights"
#: SHA-256 of each original weight file: a download is accepted only if it matches.
WEIGHT_SHA256: dict[str, str] = {
    "bass": "e0e839166242aeaca69a26449e997dd67f58056f05e337985f3ec88a3118ceb4",
    "melody1": "7fc1daf6250933f96e5b753dfc8bb830ae7a2711f4883efd653c97b1b21f8e94",
    "melody2": "96ccbfb713f62ded590de4c08ae49a4bd2bfd6c3450e9f85fee51ccae4054fb0",
    "melody3": "0bd9227670fecef33b5c4f27e6d1732c2f63b178a5d1e4b18a061f5cc11b58e2",
    "multif0": "a426f89d098478249df02db401f812c33de82a5bd7006f22912a8f9146d4f19f",
    "pitch": "7f1ef1dc450de951079b98952addb94d30945563b313232d2900f83a3ea4ce81",
    "vocal": "1a189b2de870333612df0c2a8eed122695a2dfd76240d5e3a542d12c48cbf7f4",
}

# ----------------------------------------------------------------------------- JASCO condition
BINS_PER_SEMITONE: int = BINS_PER_OCTAVE // 12
#: JASCO keeps 53 semitones, G2 (MIDI 43) .. B6 (MIDI 95).
JASCO_LOWEST_MIDI: int = 43
JASCO_N_SEMITONES: int = 53
#: MIDI number of bin 0 (FMIN = 32.7 Hz is C1 = MIDI 24, 0.17 cents flat).
FMIN_MIDI: int = 24
#: Centre bin of G2. Semitone i of the condition is the max over the 5 bins centred on bin
#: ``JASCO_LOWEST_BIN + 5 i`` (+-40 cents), and bins below G2 (Hz) are dropped first; since FMIN is
#: a hair flat, that drops the G2 centre bin too, as JASCO's own post-processing does.
JASCO_LOWEST_BIN: int = (JASCO_LOWEST_MIDI - FMIN_MIDI) * BINS_PER_SEMITONE
JASCO_FIRST_GROUP_BIN: int = JASCO_LOWEST_BIN - BINS_PER_SEMITONE // 2
#: Salience below this is zeroed before grouping (JASCO's authors used 0.5).
JASCO_SALIENCE_THRESHOLD: float = 0.5
#: Stored melody index of a frame with no salience left above the threshold.
UNVOICED_INDEX: int = -1
#: The salience frame rate as JASCO's loader uses it: truncated to an integer, 86 fps (the only
#: home of this number; the ``jasco86`` frame-rate rule, :func:`stages.melody.jasco.resample_jasco86`).
JASCO_LOADER_FRAME_RATE: int = int(SAMPLE_RATE / HOP_LENGTH)
#: ``melody.frame_rate_rule`` values: ``exact`` resamples from 22050 / 256 fps (no drift), ``jasco86``
#: reproduces JASCO's loader (rate 86, its output length, zero padding), as the released models saw.
FRAME_RATE_RULES: tuple[str, ...] = ("exact", "jasco86")

assert JASCO_FIRST_GROUP_BIN + JASCO_N_SEMITONES * BINS_PER_SEMITONE <= N_BINS
assert JASCO_LOADER_FRAME_RATE == 86
assert math.isclose(FMIN, 440.0 * 2 ** ((FMIN_MIDI - 69) / 12), rel_tol=2e-4)

# ----------------------------------------------------------------------------- melody f0 (eval)
#: Voicing threshold of the original `get_singlef0` (peak salience below it = unvoiced).
SINGLE_F0_THRESHOLD: float = 0.3
