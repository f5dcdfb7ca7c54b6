#!/bin/sh
# `make run`: start the milter on the embedded defaults with a key for this
# host's domain, creating one the first time.
set -eu
reputable="$1"
"$reputable" keys new --if-missing
echo
exec "$reputable" milter
