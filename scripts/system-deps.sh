#!/usr/bin/env bash
# Install the Debian packages edgeloop's tests need, only those missing, only when we can.
set -euo pipefail
what="${1:-test}"
need=()
case "$what" in
  venv) need+=(python3-venv) ;;
  test)
    command -v wrk >/dev/null || need+=(wrk)
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
    # The dashboard's browser tests drive Debian's Chromium with Playwright (no browser download).
    command -v chromium >/dev/null || need+=(chromium)
    [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
    ;;
esac
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: missing Debian packages: ${need[*]} (run as root, or install them yourself)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
