#!/usr/bin/env bash
# What tests/e2e/test_report_browser.py needs: Debian's Chromium and the Playwright Python
# package (its bundled driver only; Playwright's own browser download is never used).
# Idempotent and quiet: installs only what is missing.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium >/dev/null
fi
if ! python -c "import playwright.sync_api" >/dev/null 2>&1; then
    PIP_ROOT_USER_ACTION=ignore python -m pip install -q --disable-pip-version-check playwright
fi
