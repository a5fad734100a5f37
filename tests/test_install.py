"""A plain `pip install .` into a fresh virtual environment, with only torch
installed first, gives a package whose default αVIL run works: every import
the library needs at run time (scipy for the α-step's L-BFGS-B among them) is
declared in setup.py."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUN = textwrap.dedent("""
    import torch, torch.nn.functional as F
    from torch import nn
    from torch.utils.data import TensorDataset
    import avil

    torch.manual_seed(0)
    def split(n):
        x = torch.randn(n, 8)
        return TensorDataset(x, (x[:, 0] > 0).long())
    tasks = [avil.Task(name, split(64), split(32), split(32), head=nn.Linear(16, 2), loss_fn=F.cross_entropy,
                       metric_fn=avil.metrics.accuracy) for name in ("main", "aux")]
    history = avil.fit(nn.Sequential(nn.Linear(8, 16), nn.ReLU()), tasks, target="main", method="avil",
                       config=avil.FitConfig(epochs=2, progress=False))
    assert history.alpha_step[0]["evaluations"] > 0, history.alpha_step
    print("ok", avil.ops.backend(), history.test)
""")


def run(*args, cwd=None):
    # Without PYTHONPATH, so that the checkout under test is never imported in place of the install.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_plain_pip_install_into_a_fresh_venv_runs_avil_with_the_default_alpha_solver(tmp_path):
    torch_version = run(sys.executable, "-c", "import torch; print(torch.__version__.split('+')[0])").strip()
    source = tmp_path / "src"  # a copy: pip builds in place and would leave build/ in the checkout
    source.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("avil", "csrc"):
        shutil.copytree(ROOT / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info"))
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    run(python, "-m", "pip", "install", "-q", f"torch=={torch_version}")
    run(python, "-m", "pip", "install", "-q", str(source))
    out = run(python, "-c", RUN, cwd=tmp_path)  # outside the checkout: the installed package is imported
    assert out.startswith("ok reference"), out  # an isolated build has no torch: the pure-PyTorch ops
