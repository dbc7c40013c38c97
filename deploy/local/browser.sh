#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard's browser test, if missing.
set -euo pipefail
command -v chromium >/dev/null && exit 0
echo "installing chromium from Debian's packages (browser test)" >&2
if [[ $(id -u) == 0 ]]; then SUDO=; else SUDO=sudo; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
