#!/usr/bin/env bash
# Makes sure Prometheus's `promtool` is on PATH: the runbooks tests check and unit-test the alert
# rules with it. On Debian/Ubuntu as root it installs the `prometheus` package; elsewhere it says how.
set -uo pipefail
command -v promtool >/dev/null && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
  echo "installing promtool (Debian package prometheus)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; }
  command -v promtool >/dev/null && exit 0
fi
echo "promtool is required by the runbooks tests: install Prometheus (Debian/Ubuntu: apt-get install prometheus; macOS: brew install prometheus)" >&2
exit 1
