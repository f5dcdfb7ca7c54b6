#!/bin/sh
# Install the Debian packages named as arguments when any is missing.
# Installing must never start or configure a system service: Postfix is
# preseeded to "No configuration", a policy-rc.d forbids starting daemons
# during the install, and the services of packages installed here only for
# the tests (Postfix, OpenDKIM, knot, Prometheus; dkimpy-milter for the benchmark) are
# disabled after, whether or not systemd is running (disable-services.sh):
# the tests start their own instances from private directories.
set -eu
missing=""
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing Debian packages:$missing"
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    own_policy=1
fi
trap '[ -n "$own_policy" ] && $SUDO rm -f "$policy"' EXIT
$SUDO apt-get update -q
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
installed=""
for service in postfix opendkim knot dkimpy-milter prometheus; do
    case " $missing " in
    *" $service "*) installed="$installed $service.service" ;;
    esac
done
# shellcheck disable=SC2086
[ -z "$installed" ] || sh "$(dirname "$0")/disable-services.sh" $installed
