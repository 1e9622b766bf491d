import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "vectors")
sys.path.insert(0, VECTORS)  # the independent numpy reference (generate.py)


def results_per_environment(script, tmp_path, name, values):
    """Runs `script` (which saves an .npz to sys.argv[1]) once per value of the environment
    variable `name`, each in its own process (settings such as OPENBLAS_NUM_THREADS and
    PRUNEKIT_SIMD are read once per process); returns the loaded results in order."""
    import subprocess
    import numpy as np
    results = []
    for value in values:
        path = tmp_path / f"{name}-{value}.npz"
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=dict(os.environ, **{name: value}))
        results.append(np.load(path))
    return results
