#!/bin/sh
# `make deb`: build reputable_<version>_all.deb in the repository root from a
# clean copy of the sources (no virtual environment, caches or earlier builds)
# with packaging/debian/ in place as debian/.
set -eu
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
changelog=$(sed -n '1s/^reputable (\(.*\)) .*/\1/p' packaging/debian/changelog)
if [ "$version" != "$changelog" ]; then
    echo "make deb: pyproject.toml says $version, packaging/debian/changelog $changelog" >&2
    exit 1
fi
build=build/deb
tree="$build/reputable-$version"
rm -rf "$build"
mkdir -p "$tree"
tar -c --exclude-vcs --exclude=./.venv --exclude=./build --exclude=__pycache__ \
    --exclude='*.egg-info' --exclude=./.mypy_cache --exclude=./.ruff_cache \
    --exclude=./.pytest_cache --exclude=./.hypothesis --exclude='./*.deb' --exclude=./.run . |
    tar -x -C "$tree"
cp -r packaging/debian "$tree/debian"
cp packaging/reputable.service "$tree/debian/reputable.service"
# The changelog's date: reproducible builds (and the man pages' date) take it from here.
SOURCE_DATE_EPOCH=$(date -d "$(sed -n 's/^ -- .*>  //p' packaging/debian/changelog | head -n1)" +%s)
export SOURCE_DATE_EPOCH
# Debian's own python3 builds it: a python3 earlier on PATH (pyenv, a venv) would not have
# Debian's build tools.
(cd "$tree" && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage --build=binary --no-sign) \
    >"$build/build.log" 2>&1 || {
    tail -n 40 "$build/build.log" >&2
    echo "make deb: dpkg-buildpackage failed; the whole log is in $build/build.log" >&2
    exit 1
}
cp "$build/reputable_${version}_all.deb" .
echo "built reputable_${version}_all.deb"
