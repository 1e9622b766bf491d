"""The wheel `make wheel` built: what it carries, its manylinux tag, and a fresh venv that installs
it where neither the Swift toolchain nor the system OpenBLAS can be seen (clean_room.sh)."""
import glob
import json
import os
import re
import subprocess
import sys
import zipfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
VERSION = subprocess.check_output(["sh", os.path.join(ROOT, "scripts", "version.sh")], text=True).strip()
PYTAG = "cp%d%d" % sys.version_info[:2]


@pytest.fixture(scope="module")
def wheel():
    found = glob.glob(os.path.join(ROOT, "dist", f"prunekit-{VERSION}-{PYTAG}-{PYTAG}-manylinux_*_x86_64.whl"))
    assert len(found) == 1, f"expected one wheel for {PYTAG} in dist/ (make wheel builds it): {found}"
    return found[0]


def test_the_wheel_carries_the_library_and_the_openblas_it_links(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(f"prunekit-{VERSION}.dist-info/METADATA").decode()
        sbom = json.loads(z.read(f"prunekit-{VERSION}.dist-info/sboms/auditwheel.cdx.json"))
        z.extractall(tmp_path)
    assert f"\nVersion: {VERSION}\n" in metadata
    assert "prunekit/libprunekit.so.0" in names and "prunekit/py.typed" in names
    assert not [n for n in names if n.endswith(".c")], "sources shipped in the wheel"
    bundled = [n for n in names if n.startswith("prunekit.libs/")]
    openblas = [n for n in bundled if "libopenblas" in n]
    assert len(openblas) == 1, bundled
    # auditwheel records what it bundled, and libprunekit now needs its own renamed copy.
    assert "openblas" in json.dumps(sbom).lower()
    needed = subprocess.run(["readelf", "-d", str(tmp_path / "prunekit" / "libprunekit.so.0")],
                            capture_output=True, text=True, check=True).stdout
    assert f"[{os.path.basename(openblas[0])}]" in needed
    assert "[libopenblas.so.0]" not in needed


def test_the_manylinux_tag_is_the_newest_glibc_its_libraries_need(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as z:
        libraries = [n for n in z.namelist() if re.search(r"\.so(\.|$)", n)]
        z.extractall(tmp_path, members=libraries)
    needed = set()
    for name in libraries:
        symbols = subprocess.run(["objdump", "-T", str(tmp_path / name)], capture_output=True, text=True, check=True).stdout
        needed |= {int(minor) for minor in re.findall(r"\bGLIBC_2\.(\d+)", symbols)}
    tag_minor = int(re.search(r"-manylinux_2_(\d+)_x86_64\.whl$", wheel).group(1))
    # Lower would install where it cannot load; higher would refuse systems where it runs.
    assert tag_minor == max(needed), f"tag manylinux_2_{tag_minor}, libraries need glibc 2.{max(needed)}"


def test_a_fresh_venv_runs_it_without_the_toolchain_or_the_system_openblas(wheel, tmp_path):
    wheelhouse = os.path.join(ROOT, "build", "wheelhouse")  # numpy's wheel: scripts/deps.sh wheel
    assert glob.glob(os.path.join(wheelhouse, "numpy-*.whl")), "no numpy wheel in build/wheelhouse"
    run = subprocess.run(["unshare", "--mount", "--map-root-user", "bash", os.path.join(HERE, "clean_room.sh"),
                          wheel, wheelhouse, str(tmp_path)], capture_output=True, text=True,
                         env=dict(os.environ, PYTHON=sys.executable))
    print(run.stdout)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    out = run.stdout
    assert re.search(r"^hidden: \d+ paths \(.*/opt/swift .*openblas", out, re.M), out
    assert f"prunekit {VERSION} from {tmp_path}/venv/" in out
    cases = int(re.search(r"^golden masks: (\d+) cases equal$", out, re.M).group(1))
    assert cases >= 100
    assert re.search(r"^sparsegpt: [1-9]\d* cases equal", out, re.M)
    assert re.search(r"^cli: prune .* equals the golden masks", out, re.M)
    assert re.search(r"^maps: \d+ files mapped, none hidden; from prunekit.libs: .*libopenblas", out, re.M)
