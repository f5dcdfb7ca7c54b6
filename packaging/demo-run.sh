#!/bin/sh
# `make run`: start the milter on the embedded defaults with a key for this
# host's domain, creating one the first time. A host without a mail domain
# (named "vm" or "localhost", no /etc/mailname) gets no key: both commands say
# what to set, and the milter runs without signing.
set -eu
reputable="$1"
"$reputable" keys new --if-missing
echo
exec "$reputable" milter
