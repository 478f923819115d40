#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl, postgres) exist for the tests that
# start a real, throw-away PostgreSQL server (tests/helpers/postgres_server.py; the metadata
# backend of README "Running a cluster").
#
# Idempotent: nothing happens when /usr/lib/postgresql/<major>/bin/initdb is there. Else,
# where apt-get exists (and we are root, as in CI), Debian's `postgresql` package is
# installed without recommends; its own cluster is not needed (the tests run initdb in a
# temporary directory), so one the package may have started is left alone. Without apt
# this warns and exits 0: the PostgreSQL tests then skip with that reason, except under
# CI=true where they fail.
set -euo pipefail

have_binaries() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

if have_binaries; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "warning: no apt-get here: PostgreSQL server not installed (its tests will skip)" >&2
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "warning: not root: cannot apt-get install postgresql (its tests will skip)" >&2
    exit 0
fi
if ! apt-cache policy postgresql 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq >/dev/null
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql \
    >/dev/null
if ! have_binaries; then
    echo "warning: postgresql installed, but no /usr/lib/postgresql/*/bin/initdb" >&2
    exit 0
fi
ls -d /usr/lib/postgresql/*/bin | head -1
