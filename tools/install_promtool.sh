#!/usr/bin/env bash
# Put promtool (from Debian's `prometheus` package) into the venv's bin/, for the tests that
# run `promtool check rules` / `promtool test rules` on deploy/prometheus/.
#
# Only the promtool binary is extracted from the .deb (`apt-get download` + `dpkg-deb -x`):
# no Prometheus server is installed or started. Idempotent: nothing happens when the pinned
# version is already there. The pinned Debian version is tried first; Debian replaces point
# releases in its archive, so when that exact build is gone the current candidate is used
# (and said). On a machine without apt this warns and exits 0: the rule tests then skip
# with that reason, except under CI=true where they fail.
set -euo pipefail

DEST=$(realpath -m "${1:?usage: install_promtool.sh BIN_DIR}")
PIN=${PROMETHEUS_DEB_VERSION:-2.42.0+ds-5+deb12u1}
UPSTREAM=${PIN%%+*}

if [[ -x "$DEST/promtool" ]] && "$DEST/promtool" --version 2>&1 | grep -q "version $UPSTREAM"; then
    exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
    echo "warning: no apt-get/dpkg-deb here: promtool not installed (rule tests will skip)" >&2
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fetch() { apt-get download -q -o APT::Sandbox::User=root "$@" >/dev/null 2>&1; }
if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq >/dev/null
fi
if ! fetch "prometheus=$PIN"; then
    echo "note: prometheus=$PIN is no longer in the archive; using the current candidate" >&2
    fetch prometheus
fi
dpkg-deb -x prometheus_*.deb root
mkdir -p "$DEST"
install -m 0755 root/usr/bin/promtool "$DEST/promtool"
"$DEST/promtool" --version 2>&1 | head -1
