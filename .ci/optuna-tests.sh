#!/usr/bin/env bash
# Fetch the sdist of the installed Optuna (its test suite is not in the wheel) and extract it.
# Usage: bash .ci/optuna-tests.sh [CACHE_DIR]   (default: .cache/optuna-sdist in the repo root)
# Idempotent: does nothing when already extracted. The last line printed is the absolute path of
# the extracted tests/ folder, for TUNELAB_OPTUNA_TESTS (tests/search/test_optuna_contract.py).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${1:-$root/.cache/optuna-sdist}"
version="$(python -c 'import importlib.metadata as m; print(m.version("optuna"))')"
dest="$cache/optuna-$version"
if [ ! -f "$dest/tests/samplers_tests/test_samplers.py" ]; then
    mkdir -p "$cache"
    tmp="$(mktemp -d "$cache/.download.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    python -m pip download -q "optuna==$version" --no-binary :all: --no-deps --no-build-isolation -d "$tmp" >&2
    tar -xzf "$tmp/optuna-$version.tar.gz" -C "$tmp"
    rm -rf "$dest"
    mv "$tmp/optuna-$version" "$dest"
fi
cd "$dest/tests" && pwd
