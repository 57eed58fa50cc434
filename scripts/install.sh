#!/usr/bin/env bash
# Install everything chordflow needs on a fresh Debian 12 machine: apt packages and .venv.
# Idempotent: a second run only checks. Usage: scripts/install.sh [--no-apt]
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: the system browser the studio tests drive through Playwright (no browser download).
APT_PACKAGES=(ffmpeg libsndfile1 fluidsynth fluid-soundfont-gm chromium)
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
# Installed apart from requirements.lock (see below); model/evaluation/judges/musicnn.py names the same pin.
MUSICNN_PIN="musicnn==0.1.0"
UV_PIN="uv==0.13.9"

if [[ "${1:-}" != "--no-apt" ]]; then
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if (( ${#missing[@]} )); then
    echo "[install] apt: ${missing[*]}"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# The stamp records what was installed; a changed lock file or pyproject reinstalls.
stamp_value=$(cat requirements.lock pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)
stamp_file="$VENV/.chordflow-installed"
# numba's cache is compiled here, once and serially, into ~/.cache/chordflow/numba/<cpu key>
# (pipeline/numba_cache.py): worker processes of a first run then only read it. Quick when warm.
warm_numba_cache() { "$VENV/bin/python" -c "import sys; from pipeline.numba_cache import main; sys.exit(main())"; }
if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_value" ]]; then
  echo "[install] $VENV is up to date"
  warm_numba_cache
  exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
# uv installs the lock (same pins, same wheels) in about a quarter of pip's time: parallel downloads
# and unpacking. pip stays the fallback where uv cannot be installed.
if "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$UV_PIN" 2>/dev/null; then
  # uv reads no pip configuration: hand it the index pip is told to use, if any.
  pip_index=${PIP_INDEX_URL:-$("$VENV/bin/python" -m pip config get global.index-url 2>/dev/null || true)}
  [[ -n "$pip_index" ]] && export UV_DEFAULT_INDEX="$pip_index"
  pip_install() { "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" "$@"; }
else
  echo "[install] uv unavailable: installing with pip"
  pip_install() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
fi
numpy_pin=$(grep -E '^numpy==' requirements.lock)
# vamp's setup.py imports numpy and has no build isolation support: numpy, setuptools and wheel
# first; chord-extractor needs pkg_resources, which setuptools 81 removed (pinned: a plain
# "<81" would keep the venv's old 65.x, too old for this pyproject).
pip_install "pip==26.3"
pip_install "setuptools==80.10.2" "wheel==0.48.0" "$numpy_pin"
pip_install --no-build-isolation "$(grep -E '^vamp==' requirements.lock)"
# numba's cache compiles (~25 s of one core) while the rest of the lock downloads and unpacks: librosa
# and numba first, at the lock's pins, then the warm-up in the background.
pip_install -c requirements.lock librosa numba
warm_log="$VENV/.numba-warm.log"
warm_numba_cache > "$warm_log" 2>&1 &
warm_pid=$!
pip_install -r requirements.lock
# musicnn ships the pretrained MSD checkpoint the evaluation's realism judge reads (never its code);
# its metadata pins numpy<1.17, which no resolver can meet beside numpy 2, hence --no-deps here only.
pip_install --no-deps "$MUSICNN_PIN"
pip_install --no-deps --no-build-isolation -e .
if ! wait "$warm_pid"; then
  cat "$warm_log" >&2
  echo "[install] the numba cache warm-up failed (log above)" >&2
  exit 1
fi
cat "$warm_log"
echo "$stamp_value" > "$stamp_file"
echo "[install] $VENV ready ($("$VENV/bin/python" --version))"
