#!/usr/bin/env bash
# Debian's Chromium and its WebDriver (chromedriver), for the dashboard test (tests/dashboard)
# and the /docs check. Idempotent; installs only what is missing. Nothing downloads a browser of
# its own: these are the distribution's packages.
#
#   scripts/install-browser.sh      (as root; otherwise it says what to run and fails)
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-browser: missing ${missing[*]}; run 'sudo apt-get install -y ${missing[*]}' first" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null
echo "install-browser: installed ${missing[*]}"
