#!/bin/sh
# Leave the systemd units named as arguments disabled (and stopped), in the system
# under --root DIR (default /). apt-ensure.sh runs it for the services of the
# packages it installs only for the tests: the tests start their own instances.
#
# `systemctl --root=DIR disable` edits the unit links without asking systemd, so
# this works the same whether systemd is running or not (a container, a chroot, an
# image booted later): the service does not start at the next boot either. Where
# systemd runs on /, the service is also stopped. A unit that is not installed is
# skipped.
set -eu
root=/
if [ "${1:-}" = "--root" ]; then
    root="$2"
    shift 2
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
command -v systemctl >/dev/null 2>&1 || exit 0 # no systemd: no unit to enable
for unit in "$@"; do
    found=""
    for dir in etc/systemd/system lib/systemd/system usr/lib/systemd/system; do
        [ -e "${root%/}/$dir/$unit" ] && found=1
    done
    [ -n "$found" ] || continue
    if [ "$root" = / ] && [ -d /run/systemd/system ]; then
        $SUDO systemctl --quiet disable --now "$unit"
    else
        $SUDO systemctl --quiet --root="$root" disable "$unit"
    fi
done
