"""The Gradio page over :class:`~chordflow.studio.service.StudioService` (element ids are stable:
the browser tests and users' scripts find the fields by them)."""

from __future__ import annotations

import logging
from typing import Any

from chordflow.studio.config import StudioError
from chordflow.studio.request import DRUMS_SOURCES, SOLVERS, build_request
from chordflow.studio.service import Interrupted, StudioService, guidance_fields

log = logging.getLogger(__name__)

TITLE = "chordflow studio"
INTRO = """# chordflow studio
Text-to-music with temporal controls: chords, drums and melody, from your own chordflow checkpoints
(and released JASCO folders) under the models folder. Chords as `(C, 0.0), (D, 2.0)` (label, start
second) or by bars with a tempo: `C | G | Am F` at the bpm and meter below. Two variations per
request, loudness-normalised; each comes with the chords the evaluation's Chordino hears in it, a
spectrogram (with the melody when one is given) and the JSON that `chordflow generate` re-runs."""
EXAMPLES = [
    ["Strings, woodwind, orchestral, symphony.", "(C, 0.0), (D, 2.0), (F, 4.0), (Ab, 6.0), (Bb, 7.0), (C, 8.0)", 120, "4/4"],
    ["80s pop with groovy synth bass and electric piano", "(N, 0.0), (C, 0.32), (Dm7, 3.456), (Am, 4.608), (F, 8.32), (C, 9.216)", 120, "4/4"],
    ["calm piano ballad", "C | G | Am F | F G", 96, "4/4"],
    ["folk waltz with accordion", "D | A7 | D | G A7", 138, "3/4"],
]
#: The page shows at most this much of an unexpected error (never a traceback).
MAX_MESSAGE = 400


def _message(exc: BaseException) -> str:
    if isinstance(exc, StudioError):
        return f"**Error:** {exc}"
    if isinstance(exc, Interrupted):
        return "**Interrupted.** Nothing was kept of that generation."
    log.exception("studio: unexpected error")
    text = f"{type(exc).__name__}: {exc}"
    return f"**Error:** {text[:MAX_MESSAGE]} (the server log has the details)"


def build_app(service: StudioService) -> Any:
    import gradio as gr

    names = service.catalog.names()
    outputs_per_variation = 4  # audio, chord figure, spectrogram, downloads

    def generate(prompt, model, chords, bpm, meter, duration, seed, drums_file, drums_source, melody_file,
                 cfg_all, cfg_text, solver, steps, tolerance, progress=gr.Progress()):
        empty = [None] * (2 * outputs_per_variation)
        try:
            request = build_request(
                prompt=prompt, model=model, chords=chords, bpm=bpm, meter=meter, duration=duration, seed=seed,
                cfg_all=cfg_all, cfg_text=cfg_text, solver=solver, steps=steps, tolerance=tolerance,
                max_duration=service.config.max_duration_s, drums=service.check_upload(drums_file, "drums"),
                drums_source=drums_source, melody=service.check_upload(melody_file, "melody"))
            progress(0.0, desc="loading the model")

            def report(done: int, total: int | None, what: str) -> None:
                if total:
                    progress((min(done, total), total), desc=what, unit="model calls")
                else:
                    progress(None, desc=f"{what}: {done} model calls")

            result = service.generate(request, report)
        except Exception as exc:  # every failure is a message in the page; the server goes on
            return [*empty, _message(exc)]
        values = []
        for variation in result.variations:
            values += [str(variation.wav), str(variation.chord_figure), str(variation.spectrogram),
                       [str(p) for p in variation.downloads]]
        accuracy = ", ".join(f"{v.chord_accuracy:.2f}" for v in result.variations if v.chord_accuracy is not None)
        status = (f"Generated {len(result.variations)} × {result.variations[0].duration_s:.1f} s in "
                  f"{result.seconds:.1f} s" + (f"; chord accuracy (Chordino on the output): {accuracy}" if accuracy else ""))
        return [*values, status]

    def extract_song(song_file, model):
        try:
            path = service.check_upload(song_file, "song")
            if path is None:
                raise StudioError("song: upload a track first")
            frame_rate = service.generator(model).config.frame_rate
            song = service.extract_song(path, frame_rate)
        except Exception as exc:
            return [gr.update(), gr.update(), gr.update(), gr.update(), "", None, _message(exc)]
        return [song.chords_text, str(song.melody), str(path), "full mix", song.chords_text, str(song.figure),
                f"Extracted the controls of {path.name} ({song.duration_s:.1f} s): chords, melody and drums are set; "
                f"edit them and generate"]

    def recommended(model):
        try:
            values = service.recommended(model)
        except Exception as exc:
            return [gr.update()] * 5 + [_message(exc)]
        return [values["cfg_coef_all"], values["cfg_coef_txt"], values["solver"], values["steps"], values["tolerance"],
                f"{model}: its recommended guidance and solver are set"]

    from model.config import GenerateConfig

    start = guidance_fields(GenerateConfig())  # when no checkpoint can be read
    if names:
        try:
            start = service.recommended(names[0])
        except Exception as exc:  # shown when the user picks it; the page still opens
            log.warning("studio: %s", exc)

    with gr.Blocks(title=TITLE, delete_cache=(service.config.file_lifetime_s, service.config.file_lifetime_s)) as app:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Text prompt", value="Strings, woodwind, orchestral, symphony.", elem_id="prompt")
                model = gr.Dropdown(names, value=names[0] if names else None, label="Model", elem_id="model")
                chords = gr.Textbox(label="Chords: (label, start s) pairs, or bars 'C | G | Am F'",
                                    value="(C, 0.0), (D, 2.0), (F, 4.0), (Ab, 6.0), (Bb, 7.0), (C, 8.0)", elem_id="chords")
                with gr.Row():
                    bpm = gr.Number(label="bpm (chords by bars)", value=120, elem_id="bpm")
                    meter = gr.Textbox(label="meter", value="4/4", elem_id="meter")
                    duration = gr.Number(label=f"duration (s, up to {service.config.max_duration_s:g})", value=10,
                                         elem_id="duration")
                    seed = gr.Number(label="seed", value=0, precision=0, elem_id="seed")
                with gr.Row():
                    generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
                    interrupt_button = gr.Button("Interrupt", elem_id="interrupt")
                status = gr.Markdown("", elem_id="status")
            with gr.Column():
                audio_0 = gr.Audio(label="Variation 1", type="filepath", interactive=False, elem_id="audio_0")
                audio_1 = gr.Audio(label="Variation 2", type="filepath", interactive=False, elem_id="audio_1")
        with gr.Accordion("Drums, melody and a song's controls", open=True):
            with gr.Row():
                drums_file = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                      label="Drums: a file or the microphone", elem_id="drums_file")
                drums_source = gr.Radio(list(DRUMS_SOURCES), value=DRUMS_SOURCES[0],
                                        label="The drums are (a full mix goes through the drums stage separator)",
                                        elem_id="drums_source")
                melody_file = gr.File(label="Melody: audio, MIDI, or a salience/one-hot matrix (.npy, .th)",
                                      type="filepath", elem_id="melody_file")
            with gr.Row():
                song_file = gr.File(label="Controls from a song: upload a track", type="filepath", elem_id="song_file")
                with gr.Column():
                    extract_button = gr.Button("Extract its chords, melody and drums", elem_id="extract_song")
                    song_chords = gr.Textbox(label="Extracted chords", interactive=False, elem_id="song_chords")
            song_figure = gr.Image(label="The song's controls", type="filepath", interactive=False, elem_id="song_figure")
        with gr.Accordion("Guidance and solver", open=False):
            with gr.Row():
                cfg_all = gr.Number(label="guidance: all", value=start["cfg_coef_all"], step=0.25, elem_id="cfg_all")
                cfg_text = gr.Number(label="guidance: text", value=start["cfg_coef_txt"], step=0.25, elem_id="cfg_text")
                solver = gr.Dropdown(list(SOLVERS), value=start["solver"], label="ODE solver", elem_id="solver")
                steps = gr.Number(label="steps (fixed-step solvers)", value=start["steps"], precision=0, elem_id="steps")
                tolerance = gr.Number(label="ODE tolerance (adaptive solvers)", value=start["tolerance"], elem_id="tolerance")
        gr.Examples(EXAMPLES, inputs=[prompt, chords, bpm, meter], label="Examples")
        figures = []
        with gr.Row():
            for number in range(2):
                with gr.Column():
                    chord_figure = gr.Image(label=f"Variation {number + 1}: requested vs extracted chords",
                                            type="filepath", interactive=False, elem_id=f"chord_figure_{number}")
                    spectrogram = gr.Image(label=f"Variation {number + 1}: spectrogram", type="filepath",
                                           interactive=False, elem_id=f"spectrogram_{number}")
                    download = gr.File(label=f"Variation {number + 1}: WAV + JSON for `chordflow generate`",
                                       file_count="multiple", interactive=False, elem_id=f"download_{number}")
                    figures.append((chord_figure, spectrogram, download))
        outputs = [audio_0, figures[0][0], figures[0][1], figures[0][2],
                   audio_1, figures[1][0], figures[1][1], figures[1][2], status]
        generate_button.click(generate, inputs=[prompt, model, chords, bpm, meter, duration, seed, drums_file,
                                                drums_source, melody_file, cfg_all, cfg_text, solver, steps, tolerance],
                              outputs=outputs, api_name="generate", concurrency_limit=1)
        model.change(recommended, inputs=[model], outputs=[cfg_all, cfg_text, solver, steps, tolerance, status])
        interrupt_button.click(service.interrupt, queue=False, api_name="interrupt")
        extract_button.click(extract_song, inputs=[song_file, model],
                             outputs=[chords, melody_file, drums_file, drums_source, song_chords, song_figure, status],
                             api_name="extract_song", concurrency_limit=1)
    return app
