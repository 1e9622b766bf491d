#!/usr/bin/env bash
# Runs inside `unshare --mount --map-root-user` (test_wheel.py): hides the Swift toolchain and
# the system OpenBLAS (with the BLAS/LAPACK alternatives and the gfortran runtime it links),
# installs the wheel into a fresh venv from local files only, and runs wheel_smoke.py there.
#   clean_room.sh WHEEL WHEELHOUSE WORKDIR
set -euo pipefail
wheel=$1 wheelhouse=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
vectors=$here/../vectors
hidden=$work/hidden.txt
: > "$hidden"

# Everything the wheel must not need, resolved through symlinks and /etc/alternatives first:
# files are covered with /dev/null, then directories with an empty tmpfs.
files=() dirs=(/opt/swift)
for entry in /usr/lib/x86_64-linux-gnu/*openblas* /usr/lib/x86_64-linux-gnu/libblas* \
             /usr/lib/x86_64-linux-gnu/liblapack* /usr/lib/x86_64-linux-gnu/libgfortran* \
             /usr/lib/x86_64-linux-gnu/libquadmath*; do
    [ -e "$entry" ] || continue
    real=$(realpath "$entry")
    if [ -d "$real" ]; then dirs+=("$real"); else files+=("$real"); fi
done
for f in $(printf '%s\n' "${files[@]}" | sort -u); do
    mount --bind /dev/null "$f"
    echo "$f" >> "$hidden"
done
for d in $(printf '%s\n' "${dirs[@]}" | sort -u); do
    [ -d "$d" ] || continue
    mount -t tmpfs pk-hidden "$d"
    echo "$d" >> "$hidden"
done
echo "hidden: $(wc -l < "$hidden") paths ($(tr '\n' ' ' < "$hidden"))"

cd "$work"
unset PYTHONPATH PRUNEKIT_LIB_DIR
export PATH=/usr/bin:/bin
"$PYTHON" -m venv venv
venv/bin/python -m pip install -q --disable-pip-version-check --no-index --find-links "$wheelhouse" "$wheel"
exec venv/bin/python "$here/wheel_smoke.py" "$vectors" "$hidden"
