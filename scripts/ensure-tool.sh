#!/usr/bin/env bash
# Usage: ensure-tool.sh <command> <debian-package> <who needs it>
# Makes sure <command> is on PATH. On Debian/Ubuntu as root it installs <debian-package>; elsewhere
# it says what to install. Used by .ci/run and by the test scripts that need a system tool
# (promtool for the runbooks' alert rules; curl for the docs' command blocks).
set -uo pipefail
command=$1 package=$2 who=$3
command -v "$command" >/dev/null && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
  echo "installing $command (Debian package $package)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "$package" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "$package" >/dev/null 2>&1; }
  command -v "$command" >/dev/null && exit 0
fi
echo "$command is required by $who: install it (Debian/Ubuntu: apt-get install $package)" >&2
exit 1
