#!/usr/bin/env bash
# Fetch Debian's `prometheus` package (the Prometheus server and promtool) into
# .cache/prometheus/ without root: `apt-get download` of the pinned version, then
# `dpkg-deb -x`. The tests run a real Prometheus and `promtool test rules` from there.
#
#   scripts/fetch_prometheus.sh          # prints the folder holding prometheus and promtool
#
# PROMETHEUS_DEB_VERSION is the pin (Debian 12's package); change it to move on, and the next
# run fetches that version. .cache/prometheus/VERSION records the version and the sha256 of the
# package it came from. Where the package cannot be fetched, this ends with one line naming it
# and exits 3.
set -euo pipefail

VERSION="${PROMETHEUS_DEB_VERSION:-2.42.0+ds-5+deb12u1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${PROMETHEUS_DIR:-$ROOT/.cache/prometheus}"
BIN="$DEST/root/usr/bin"

fail() {
  echo "error: cannot fetch Debian's prometheus $VERSION (server and promtool): $*" >&2
  exit 3
}

if [ -x "$BIN/prometheus" ] && [ -x "$BIN/promtool" ] \
  && [ "$(head -n1 "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]; then
  echo "$BIN"
  exit 0
fi

command -v apt-get >/dev/null || fail "apt-get is not on PATH (a Debian or Ubuntu machine has it)"
command -v dpkg-deb >/dev/null || fail "dpkg-deb is not on PATH"

mkdir -p "$DEST"
work="$(mktemp -d "$DEST/fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

download() {
  (cd "$work" && apt-get download -q "prometheus=$VERSION") >"$work/apt.log" 2>&1
}

if ! download; then
  # The package lists may not know the version yet; root can refresh them once.
  if [ "$(id -u)" = "0" ] && apt-get update -q >"$work/update.log" 2>&1 && download; then
    :
  else
    reason="$(grep -E '^(E|W):' "$work/apt.log" | head -n1 || true)"
    fail "apt-get download failed (${reason:-see apt-get download prometheus=$VERSION}); run \`apt-get update\` as root, or set PROMETHEUS_DEB_VERSION to a version \`apt-cache policy prometheus\` lists"
  fi
fi

deb="$(find "$work" -maxdepth 1 -name "prometheus_*.deb" | head -n1)"
[ -n "$deb" ] || fail "apt-get download wrote no package"
got="$(dpkg-deb -f "$deb" Version)"
[ "$got" = "$VERSION" ] || fail "apt-get download brought version $got"
dpkg-deb -x "$deb" "$work/root" || fail "dpkg-deb -x could not unpack $(basename "$deb")"
[ -x "$work/root/usr/bin/prometheus" ] && [ -x "$work/root/usr/bin/promtool" ] \
  || fail "the package holds no usr/bin/prometheus and usr/bin/promtool"

rm -rf "$DEST/root"
mv "$work/root" "$DEST/root"
printf '%s\nsha256 %s  %s\n' "$VERSION" "$(sha256sum "$deb" | cut -d' ' -f1)" \
  "$(basename "$deb")" >"$DEST/VERSION.tmp"
mv "$DEST/VERSION.tmp" "$DEST/VERSION"
echo "fetched prometheus $VERSION into $DEST/root" >&2
echo "$BIN"
