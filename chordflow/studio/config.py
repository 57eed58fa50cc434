"""The studio's settings, parsed once at the edge (the command line) into one frozen config."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

#: Where the page is served unless told otherwise: this machine only.
LOCAL_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
#: Uploads larger or longer than these are refused with a message.
MAX_UPLOAD_MB = 50.0
MAX_UPLOAD_SECONDS = 600.0
#: The longest piece a request may ask for (windowed continuation beyond the model's window).
MAX_DURATION_SECONDS = 300.0
MIN_DURATION_SECONDS = 1.0
#: Generated files older than this are removed (and all of them when the server stops).
FILE_LIFETIME_SECONDS = 3600.0
#: On shutdown, how long an interrupted generation may take to hand back its last outputs.
SHUTDOWN_DRAIN_SECONDS = 30.0
#: Variations generated per request (JASCO's app: two).
VARIATIONS = 2


class StudioError(ValueError):
    """A request or a launch the studio refuses; the message is shown as is."""


@dataclass(frozen=True)
class StudioConfig:
    models_dir: Path
    #: params.yaml whose drums / melody / chords / model_eval sections the controls and figures use.
    params: Path | None = None
    #: Released JASCO folders: a local T5-base folder (default $CHORDFLOW_T5) and a chord map.
    t5: Path | None = None
    chord_map: Path | None = None
    host: str = LOCAL_HOST
    port: int = DEFAULT_PORT
    share: bool = False
    username: str | None = None
    password: str | None = None
    #: Serve beyond this machine without a login (must be asked for by name).
    allow_no_auth: bool = False
    inbrowser: bool = False
    max_upload_mb: float = MAX_UPLOAD_MB
    max_upload_seconds: float = MAX_UPLOAD_SECONDS
    max_duration_s: float = MAX_DURATION_SECONDS
    file_lifetime_s: float = FILE_LIFETIME_SECONDS

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username and self.password else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_launch(config: StudioConfig) -> None:
    """Refuse a launch that would serve the models to others without a login (unless asked for)."""
    if bool(config.username) != bool(config.password):
        raise StudioError("give both --username and --password, or neither")
    if not config.models_dir.is_dir():
        raise StudioError(f"models folder {config.models_dir} does not exist: train one (`make demo` writes "
                          f"models/demo/checkpoint.pt) or pass --models DIR")
    exposed = config.share or not is_loopback(config.host)
    if exposed and config.auth is None and not config.allow_no_auth:
        where = "--share" if config.share else f"--listen {config.host}"
        raise StudioError(f"{where} serves the studio beyond this machine: give --username and --password, "
                          f"or --allow-no-auth to serve it without a login")
    if not 0 < config.port < 65536:
        raise StudioError(f"--port {config.port} is not a TCP port")
    if not 0 < config.max_upload_mb or not 0 < config.max_upload_seconds:
        raise StudioError("upload limits must be > 0")
