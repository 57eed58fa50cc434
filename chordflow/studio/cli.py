"""``chordflow studio``: serve the app (JASCO's launch flags, safe defaults: config.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chordflow.studio.config import DEFAULT_PORT, LOCAL_HOST, MAX_DURATION_SECONDS, MAX_UPLOAD_MB, \
    MAX_UPLOAD_SECONDS, SHUTDOWN_DRAIN_SECONDS, StudioConfig, StudioError, check_launch

if TYPE_CHECKING:  # the service imports the model stack; the CLI loads it only when serving
    from chordflow.studio.service import StudioService


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    studio = subparsers.add_parser("studio", help="the web app: text, chords, drums, melody -> music, in a browser")
    studio.add_argument("--models", default="models", help="folder of checkpoints the page may pick from "
                        "(each run's checkpoint.pt, and released JASCO folders); default: models")
    studio.add_argument("--params", default="params.yaml", help="drums / melody / chords / model_eval sections for "
                        "the controls and the figures (defaults when absent)")
    studio.add_argument("--t5", help="released JASCO folders: a local T5-base folder (default $CHORDFLOW_T5)")
    studio.add_argument("--chord-map", help="released JASCO folders: chord label -> index map (.json or .pkl)")
    studio.add_argument("--listen", default=LOCAL_HOST, help=f"address to serve on (default {LOCAL_HOST}: this "
                        "machine only; another address needs --username/--password or --allow-no-auth)")
    studio.add_argument("--port", type=int, default=DEFAULT_PORT)
    studio.add_argument("--share", action="store_true", help="a public gradio.live link (online only; needs a login "
                        "or --allow-no-auth)")
    studio.add_argument("--username")
    studio.add_argument("--password")
    studio.add_argument("--allow-no-auth", action="store_true", help="serve beyond this machine without a login")
    studio.add_argument("--inbrowser", action="store_true", help="open the page in the browser")
    studio.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB)
    studio.add_argument("--max-upload-seconds", type=float, default=MAX_UPLOAD_SECONDS)
    studio.add_argument("--max-duration", type=float, default=MAX_DURATION_SECONDS, help="longest piece (s) a request may ask for")
    studio.set_defaults(func=_studio)


def config_from_args(args: argparse.Namespace) -> StudioConfig:
    return StudioConfig(models_dir=Path(args.models), params=Path(args.params),
                        t5=Path(args.t5) if args.t5 else None, chord_map=Path(args.chord_map) if args.chord_map else None,
                        host=args.listen, port=args.port,
                        share=args.share, username=args.username, password=args.password,
                        allow_no_auth=args.allow_no_auth, inbrowser=args.inbrowser, max_upload_mb=args.max_upload_mb,
                        max_upload_seconds=args.max_upload_seconds, max_duration_s=args.max_duration)


def serve(config: StudioConfig, block: bool = True):
    """Start the app (after :func:`check_launch`); returns (app, service). ``block``: until Ctrl-C,
    then remove every upload and output."""
    check_launch(config)
    from chordflow.studio.service import StudioService

    service = StudioService(config)
    # Gradio's own upload cache inside the service's folder, so closing removes it too
    os.environ["GRADIO_TEMP_DIR"] = str(service.work_dir / "gradio")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from chordflow.studio.app import build_app

    app = build_app(service)
    try:
        app.queue(default_concurrency_limit=1).launch(
            server_name=config.host, server_port=config.port, share=config.share, auth=config.auth,
            inbrowser=config.inbrowser, max_file_size=int(config.max_upload_mb * 1e6),
            allowed_paths=[str(service.work_dir)], prevent_thread_lock=not block, show_error=False, quiet=not block)
    except BaseException:
        service.close()
        raise
    if block:
        shutdown(app, service)
    return app, service


def shutdown(app: Any, service: StudioService, drain_s: float = SHUTDOWN_DRAIN_SECONDS) -> None:
    """Stop serving, then remove every upload and output. A generation still running is interrupted
    and waited for (at most ``drain_s``): gradio copies a finished request's files into its cache
    folder after the handler returns, and would otherwise bring the removed folder back."""
    service.interrupt()
    deadline = time.monotonic() + drain_s
    while _requests_in_flight(app) and time.monotonic() < deadline:
        time.sleep(0.05)
    app.close()
    service.close()


def _requests_in_flight(app: Any) -> bool:
    """Whether gradio's queue still holds a request between its start and its last output."""
    queue = getattr(app, "_queue", None)
    return any(job is not None for job in getattr(queue, "active_jobs", None) or [])


def _studio(args: argparse.Namespace) -> int:
    try:
        serve(config_from_args(args))
    except StudioError as exc:
        print(f"chordflow studio: {exc}", file=sys.stderr)
        return 2
    return 0
