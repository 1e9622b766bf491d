"""The version is written once, in the header's PK_VERSION_* macros: the Makefile (library file
name, pkg-config and CMake files) and setup.py (the wheel) take theirs from scripts/version.sh."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FILES = ["Makefile", "scripts/version.sh", "include/prunekit.h", "prunekit.pc.in", "cmake/PruneKitConfig.cmake.in",
         "cmake/PruneKitConfigVersion.cmake.in", "bindings/python/setup.py", "bindings/python/pyproject.toml",
         "Package.swift"]  # (the library's prerequisites: its rule is listed by make -n, not run)


def tree_with_version(tmp_path, major, minor, patch, string=None):
    """The files that carry a version, copied, with the header's macros set to this version."""
    for name in FILES:
        os.makedirs(tmp_path / os.path.dirname(name), exist_ok=True)
        shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    header = (tmp_path / "include" / "prunekit.h").read_text()
    for field, value in (("MAJOR", major), ("MINOR", minor), ("PATCH", patch)):
        header = re.sub(rf"^#define PK_VERSION_{field} .*$", f"#define PK_VERSION_{field} {value}", header, flags=re.M)
    string = string or f"{major}.{minor}.{patch}"
    header = re.sub(r'^#define PK_VERSION_STRING .*$', f'#define PK_VERSION_STRING "{string}"', header, flags=re.M)
    (tmp_path / "include" / "prunekit.h").write_text(header)
    (tmp_path / "Sources").mkdir()
    return tmp_path


def version_sh(tree):
    return subprocess.run(["sh", str(tree / "scripts" / "version.sh")], capture_output=True, text=True)


def test_version_sh_reads_the_header_macros():
    header = open(os.path.join(ROOT, "include", "prunekit.h")).read()
    numbers = [re.search(rf"^#define PK_VERSION_{f} (\d+)$", header, re.M).group(1) for f in ("MAJOR", "MINOR", "PATCH")]
    assert version_sh(pathlib.Path(ROOT)).stdout.strip() == ".".join(numbers)


def test_a_new_header_version_reaches_the_install_files_and_the_wheel(tmp_path):
    tree = tree_with_version(tmp_path, 3, 14, 15)
    assert version_sh(tree).stdout.strip() == "3.14.15"
    plan = subprocess.run(["make", "-n", "-C", str(tree), "install", "PREFIX=/opt/pk"], capture_output=True, text=True).stdout
    assert "lib/libprunekit.so.3.14.15" in plan
    assert plan.count("s|@VERSION@|3.14.15|g") == 3  # prunekit.pc, PruneKitConfig, PruneKitConfigVersion
    assert version_sh(pathlib.Path(ROOT)).stdout.strip() not in plan
    setup = subprocess.run([sys.executable, "setup.py", "--version"], capture_output=True, text=True,
                           cwd=tree / "bindings" / "python")
    assert setup.stdout.strip().splitlines()[-1] == "3.14.15", setup.stderr


def test_a_string_that_disagrees_with_the_numbers_is_refused(tmp_path):
    result = version_sh(tree_with_version(tmp_path, 1, 2, 3, string="1.2.4"))
    assert result.returncode == 1 and "disagrees" in result.stderr
