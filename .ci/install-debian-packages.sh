#!/usr/bin/env bash
# Debian packages the tests use: chromium (and a font for the plots) for the web demo's browser test and
# `report --pdf` (playwright-core drives this system browser, never a download of its own), and protoc, the
# independent reader the TensorBoard event-file test checks its bytes with.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi dejavu && command -v protoc >/dev/null 2>&1; then
  echo "chromium, fonts and protoc already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core protobuf-compiler
