# Shared set-up for scripts/demo and scripts/test: finds interpreters and creates the two
# virtual environments idempotently (a stamp file holds the hash of what was installed).
#   .venv      Python >= 3.12, jax 0.12 + this package (editable) + pytest
#   .venv-ref  the official reference: ltx-core / ltx-pipelines 1.0.0 on CPU torch (tests only)
# Source it; it defines functions only.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PIP_DISABLE_PIP_VERSION_CHECK=1

_log() { printf '[setup] %s\n' "$*" >&2; }

# Prints a command (with an optional VAR=value prefix, for pyenv) that runs a Python of at least
# version $1 (a "3.N" string), preferring $2... in order.
_find_python() {
  local min="$1" cand; shift
  for cand in "$@"; do
    # shellcheck disable=SC2086  # $cand is "VAR=value cmd" on purpose
    if env $cand -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$min'.split('.'))))" >/dev/null 2>&1; then
      echo "$cand"; return 0
    fi
  done
  return 1
}

# Runs pip quietly: output goes to $1/pip.log and is shown only when pip fails.
_pip() {
  local venv="$1"; shift
  if ! "$venv/bin/pip" "$@" >>"$venv/pip.log" 2>&1; then
    _log "pip $* failed; last lines of $venv/pip.log:"
    grep -v "^WARNING: Location" "$venv/pip.log" | tail -n 25 >&2 || true
    return 1
  fi
}

_stamp_ok() { [ -f "$1/.ltx-stamp" ] && [ "$(cat "$1/.ltx-stamp")" = "$2" ]; }

# Hash of the files that define an environment.
_hash() { cat "$@" | sha256sum | cut -c1-16; }

ensure_main_env() {
  local venv="$ROOT/.venv" want
  want="$(_hash "$ROOT/pyproject.toml" "$ROOT/scripts/env.sh")"
  if _stamp_ok "$venv" "$want"; then return 0; fi
  local py; py="$(_find_python 3.12 python3.12 "PYENV_VERSION=3.12.1 python3.12" python3.13 python3)" || { _log "no Python >= 3.12 found (jax 0.12 needs it); install one, e.g. pyenv install 3.12"; return 1; }
  _log "creating $venv with: $py"
  rm -rf "$venv"
  env $py -m venv "$venv" || return 1
  _pip "$venv" install -e "$ROOT[test]" || return 1
  echo "$want" > "$venv/.ltx-stamp"
}

# The pinned version of $1 in tests/reference/pins.txt.
_pin() { awk -v n="$1" '$1 == n {print $2}' "$ROOT/tests/reference/pins.txt"; }

# Prints a command (as _find_python) whose Python is exactly version $1 ("3.N"), trying $2... in order.
_find_python_exact() {
  local want="$1" cand; shift
  for cand in "$@"; do
    # shellcheck disable=SC2086
    if [ "$(env $cand -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then
      echo "$cand"; return 0
    fi
  done
  return 1
}

# The reference environment is exactly the pinned one (tests/reference/pins.txt): Python, CPU torch,
# ltx-core / ltx-pipelines, transformers. Anything else is an error, never a silent fallback.
ensure_ref_env() {
  local venv="$ROOT/.venv-ref" req="$ROOT/tests/reference/requirements.txt" want
  local req_diffusers="$ROOT/tests/reference/requirements-diffusers.txt" pins="$ROOT/tests/reference/pins.txt"
  want="$(_hash "$req" "$req_diffusers" "$pins" "$ROOT/scripts/env.sh")"
  if _stamp_ok "$venv" "$want"; then return 0; fi
  local pyv torchv corev pipev
  pyv="$(_pin python)" torchv="$(_pin torch)" corev="$(_pin ltx-core)" pipev="$(_pin ltx-pipelines)"
  local cands=("python$pyv") v
  while read -r v; do cands+=("PYENV_VERSION=$v python$pyv"); done < <(pyenv versions --bare 2>/dev/null | grep "^$pyv\." || true)
  local py; py="$(_find_python_exact "$pyv" "${cands[@]}")" || {
    _log "no Python $pyv found for the reference environment (pinned in tests/reference/pins.txt; another version is not accepted): install one, e.g. pyenv install $pyv"
    return 1; }
  _log "creating $venv (official ltx-core reference, CPU torch $torchv) with: $py"
  rm -rf "$venv"
  env $py -m venv "$venv" || return 1
  # torch first, exactly the pinned CPU build (the local wheel on these machines).
  if ! _pip "$venv" install "torch==$torchv"; then
    _log "torch==$torchv (CPU) is not installable here; the reference environment needs exactly that version (tests/reference/pins.txt): make its CPU wheel available to pip (e.g. PIP_FIND_LINKS or --index-url https://download.pytorch.org/whl/cpu in pip.conf)"
    return 1
  fi
  # --no-deps: ltx-core asks for an unpinned torchaudio whose PyPI build is CUDA-only and breaks
  # imports next to CPU torch; a stub (tests/reference/stubs) stands in for it.
  _pip "$venv" install --no-deps "ltx-core==$corev" "ltx-pipelines==$pipev" || return 1
  _pip "$venv" install -r "$req" || return 1
  _pip "$venv" install --no-deps --target "$venv/diffusers-site" -r "$req_diffusers" || return 1
  local site; site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$ROOT/tests/reference/stubs" > "$site/ltx_ref_stubs.pth"
  "$venv/bin/python" -c "import ltx_core.loader, ltx_core.quantization, ltx_pipelines.distilled" || { _log "reference imports failed"; return 1; }
  # exactly the pinned versions (a dependency may have pulled another torch or transformers)
  (cd "$ROOT/tests/reference" && "$venv/bin/python" -c "import ltxref") || { _log "the reference environment is not the pinned one; see the message above"; return 1; }
  echo "$want" > "$venv/.ltx-stamp"
}
