#!/usr/bin/env bash
# Entry point of the apptainer test container (nbcore-ci/apptainer:sid, started by
# tests/apptainer/test_in_container.py as root): makes /dev/fuse usable, installs nbcore and
# every plugin editable into a venv of this container's Python (kept in VENVS, one per checkout,
# rebuilt when a pyproject.toml changed, removed after a week unused), then runs the inner apptainer tests as the unprivileged user
# nbcore (uid 1000, which Apptainer needs) with the engine required.
#
#   enter.sh VENVS [PYTEST ARGS...]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
venvs=${1:?usage: enter.sh VENVS [PYTEST ARGS...]}
shift
log() { echo "apptainer tests: $*" >&2; }

chmod 666 /dev/fuse   # Docker creates it 0600: uid 1000 must open it to mount SIF images

venv=$venvs/$(echo "$repo" | sha256sum | cut -c1-16)
stamp=$(cat "$repo/pyproject.toml" "$repo"/plugins/*/pyproject.toml | sha256sum | cut -c1-16)
mkdir -p "$venvs"
exec 9>"$venvs/.lock"
flock 9
find "$venvs" -mindepth 2 -maxdepth 2 -name .complete -mtime +7 -printf '%h\0' | xargs -0 -r rm -rf
if [ "$(cat "$venv/.complete" 2>/dev/null)" != "$stamp" ]; then
    log "installing nbcore and its plugins into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    packages=(-e "$repo[test]")
    for plugin in "$repo"/plugins/*/; do
        [ -f "$plugin/pyproject.toml" ] && packages+=(-e "$plugin")
    done
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${packages[@]}"
    echo "$stamp" >"$venv/.complete"
fi
touch "$venv/.complete"
flock -u 9

groups=()
[ -S /var/run/docker.sock ] && groups=(--groups "$(stat -c %g /var/run/docker.sock)")   # for docker-daemon://
[ ${#groups[@]} -gt 0 ] || groups=(--clear-groups)
work=$(mktemp -d /tmp/nbcore-apptainer-tests.XXXXXX)
chown 1000:1000 "$work"
cd "$work"
log "$(apptainer --version), host Python $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])')"
exec env HOME=/home/nbcore USER=nbcore LOGNAME=nbcore NBCORE_REQUIRE_ENGINES=apptainer NBCORE_APPTAINER_INNER=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    setpriv --reuid=1000 --regid=1000 "${groups[@]}" -- \
    "$venv/bin/python" -m pytest -p no:cacheprovider --rootdir "$repo" -c "$repo/pyproject.toml" \
    -m apptainer "$repo/tests/apptainer/inner" "$@"
