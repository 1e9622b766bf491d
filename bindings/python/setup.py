"""Builds the _prunekit extension against libprunekit and ships the library inside the package.

The library comes from PRUNEKIT_LIB_DIR if set (the Makefile passes its build), else this
builds it with `make lib` at the repository root (Swift toolchain and libopenblas-dev needed).
The extension finds the packaged libprunekit.so.0 next to itself (rpath $ORIGIN). The version is
the header's (scripts/version.sh reads the PK_VERSION_* macros of include/prunekit.h).

Why setuptools: the native part is built by SwiftPM (through make), not by CMake or Meson, so
scikit-build-core or meson-python would only wrap a prebuilt library too; setuptools with a
prebuilt library is what pip, `python -m build` and auditwheel users know best. `make wheel`
then turns this wheel into a manylinux one that carries OpenBLAS.
"""
import os
import shutil
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


class BuildWithLibrary(build_ext):
    def run(self):
        lib_dir = os.environ.get("PRUNEKIT_LIB_DIR")
        if not lib_dir:
            subprocess.check_call(["make", "-C", ROOT, "lib"])
            lib_dir = os.path.join(ROOT, ".build-static", "release")
        library = os.path.join(lib_dir, "libprunekit.so")
        for ext in self.extensions:
            ext.library_dirs = [lib_dir]
        super().run()
        # Ship the library beside the extension, under its SONAME.
        for target in {os.path.dirname(self.get_ext_fullpath(e.name)) for e in self.extensions} | {os.path.join(HERE, "prunekit")}:
            os.makedirs(target, exist_ok=True)
            shutil.copyfile(library, os.path.join(target, "libprunekit.so.0"))


def header_version():
    return subprocess.check_output(["sh", os.path.join(ROOT, "scripts", "version.sh")], text=True).strip()


setup(
    version=header_version(),
    ext_modules=[
        Extension(
            "prunekit._prunekit",
            sources=["prunekit/_prunekit.c"],
            include_dirs=[os.path.join(ROOT, "include")],
            libraries=["prunekit"],
            runtime_library_dirs=["$ORIGIN"],
            extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Werror"],
        )
    ],
    cmdclass={"build_ext": BuildWithLibrary},
)
