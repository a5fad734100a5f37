import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Notebooks run by the tests write their results here, never over the committed ones.
os.environ.setdefault("AVIL_RESULTS_DIR", str(ROOT / ".pytest_cache" / "results"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def toy():
    """A fresh toy suite and encoder (seed 0), small enough for unit tests."""
    from avil.tasks import toy as toy_suite

    def make(seed=0, **kwargs):
        return toy_suite.make_encoder(seed), toy_suite.make_tasks(seed, **kwargs)

    return make
