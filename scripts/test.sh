#!/usr/bin/env bash
# Set up everything the test suite needs on a Debian/Ubuntu machine, then run it.
#
#   bash scripts/test.sh            # whole suite
#   bash scripts/test.sh -x -k pg   # arguments go to pytest
#
# 1. Installs the database server packages when missing (postgresql, mariadb-server; and
#    chromium + chromium-driver for the dashboard's browser test) and
#    keeps their system services from starting: the tests start their own throwaway
#    servers (replicator/sandbox.py) on free ports and never touch system ones.
# 2. Creates .venv (python3 >= 3.11) and installs the project with its dev extras whenever
#    pyproject.toml changed since the last install.
# 3. Type-checks the package (mypy, strict config in pyproject.toml), then runs pytest.
# Exit code: pytest's when tests fail; otherwise 1 if mypy found errors; otherwise 0.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root to run: $*"
        exit 1
    fi
}

find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# A venv only works where it was created (absolute paths in its scripts): one copied or
# committed from another checkout counts as missing.
venv_ok() {
    [ -x .venv/bin/python ] && .venv/bin/python -c '' 2>/dev/null || return 1
    case "$(head -n1 .venv/bin/pip 2>/dev/null)" in
        "#!$PWD/.venv/bin/python"*) return 0 ;;
        *) return 1 ;;
    esac
}

# ---------------------------------------------------------------- 1. system packages
missing=()
if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    missing+=(postgresql)
fi
if ! { command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; } ||
    ! command -v mariadb-install-db >/dev/null 2>&1; then
    missing+=(mariadb-server)
fi
# the dashboard's browser test drives headless Chromium through its WebDriver
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    missing+=(chromium chromium-driver)
fi
if ! venv_ok; then
    py=$(find_python || true)
    if [ -z "$py" ]; then
        missing+=(python3 python3-venv)
    elif ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
        missing+=(python3-venv)
    fi
fi

if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing ${missing[*]} and no apt-get: install them with your package manager"
        exit 1
    fi
    log "installing ${missing[*]}"
    # Package scripts must not start the system services: with policy-rc.d exiting 101,
    # invoke-rc.d / deb-systemd-invoke leave them stopped. Restore any existing policy after.
    policy=/usr/sbin/policy-rc.d
    backup=""
    if [ -e "$policy" ]; then
        backup=$(mktemp)
        as_root cp -p "$policy" "$backup"
    fi
    restore_policy() {
        if [ -n "$backup" ]; then
            as_root cp -p "$backup" "$policy"
            rm -f "$backup"
        else
            as_root rm -f "$policy"
        fi
    }
    trap restore_policy EXIT
    printf '#!/bin/sh\n# written by scripts/test.sh: do not start services\nexit 101\n' |
        as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    restore_policy
    trap - EXIT
fi

# ---------------------------------------------------------------- 2. virtualenv
if ! venv_ok; then
    py=$(find_python) || { log "python3 >= 3.11 not found"; exit 1; }
    if [ -e .venv ]; then
        log "recreating .venv: it was made elsewhere or is broken"
        rm -rf .venv
    else
        log "creating .venv with $py"
    fi
    "$py" -m venv .venv
fi
stamp=.venv/.replicator-deps
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ] ||
    ! .venv/bin/python -c 'import pytest, mypy, replicator, sys, os
sys.exit(not replicator.__file__.startswith(os.getcwd() + os.sep))' 2>/dev/null; then
    log "installing the project and its dev dependencies into .venv"
    # Quiet unless it fails: the build backend prints pages of deprecation notices.
    if ! pip_out=$(.venv/bin/python -m pip install -q --disable-pip-version-check \
        -e '.[dev]' 2>&1); then
        printf '%s\n' "$pip_out" >&2
        log "pip install failed"
        exit 1
    fi
    echo "$wanted" >"$stamp"
fi

# ---------------------------------------------------------------- 3. checks
mypy_status=0
log "mypy replicator"
.venv/bin/mypy replicator || mypy_status=$?

log "pytest $*"
pytest_status=0
.venv/bin/pytest "$@" || pytest_status=$?

if [ "$pytest_status" -ne 0 ]; then
    exit "$pytest_status"
fi
if [ "$mypy_status" -ne 0 ]; then
    log "tests passed but mypy reported errors (see above)"
    exit 1
fi
exit 0
