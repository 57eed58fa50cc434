"""``chordflow studio``: a Gradio app over the whole system (JASCO's app and what its users ask for).

Layers, each usable without the one above it:
    config.py    launch and safety settings (parsed once from the command line), the launch check
    catalog.py   the checkpoints under the models folder, the only ones the page can name
    request.py   one request from the page's fields -> a prompts file ``chordflow generate`` re-runs
    service.py   the work: uploads checked, controls loaded, generation, figures, temporary files
    figures.py   requested vs extracted chords, spectrogram with the melody, a song's controls
    app.py       the Gradio page over the service
"""
