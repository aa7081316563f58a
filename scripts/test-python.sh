#!/usr/bin/env bash
# The Python package's tests: builds and installs `strata` (crates/python, maturin + PyO3)
# into a virtual environment under target/, then runs pytest over crates/python/tests. They
# compare the package with the CLI, so they need the strata binary (`cargo build --release -p
# strata`; `cargo test --release --workspace` builds it) and the default model
# (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${STRATA_PY_VENV:-target/py-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "maturin>=1.9,<2" numpy pytest "ray[data]==2.58.0"
"$venv/bin/pip" install -q --disable-pip-version-check ./crates/python
"$venv/bin/python" -m pytest -q crates/python/tests
