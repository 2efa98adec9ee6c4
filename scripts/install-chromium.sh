#!/usr/bin/env bash
# Install Debian's chromium for the report tests (headless screenshots); no-op if present.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "install-chromium: installing Debian's chromium" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
    fonts-dejavu-core >/dev/null
else
  echo "install-chromium: chromium is missing; install Debian's chromium package" >&2
  exit 1
fi
