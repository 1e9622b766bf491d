#!/bin/sh
# Prints PruneKit's version, MAJOR.MINOR.PATCH from the PK_VERSION_* macros of include/prunekit.h:
# the one place it is written. The Makefile (library file name, pkg-config and CMake files) and
# bindings/python/setup.py (the wheel's version) read it from here.
set -eu
header="$(dirname "$0")/../include/prunekit.h"
field() { sed -n "s/^#define PK_VERSION_$1 \\(.*\\)\$/\\1/p" "$header"; }
version="$(field MAJOR).$(field MINOR).$(field PATCH)"
case "$version" in
    [0-9]*.[0-9]*.[0-9]*) ;;
    *) echo "version.sh: no PK_VERSION_MAJOR/MINOR/PATCH in $header" >&2; exit 1 ;;
esac
if [ "$(field STRING)" != "\"$version\"" ]; then
    echo "version.sh: PK_VERSION_STRING $(field STRING) disagrees with the numbers ($version) in $header" >&2
    exit 1
fi
echo "$version"
