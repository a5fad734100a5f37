"""The README's examples run as written."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bring_your_own_tasks_example_runs(capsys):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Bring your own tasks"):]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 16  # short enough to read at once
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", out).group(1))
    assert accuracy > 0.9, out  # a linear rule in 8 dimensions: learnable


def test_hugging_face_example_runs(capsys, tmp_path, monkeypatch):
    """A tiny randomly initialised BERT, tokenised datasets splits, a collator,
    a linear schedule with warmup, AdamW, clipping and TensorBoard."""
    pytest.importorskip("transformers")
    pytest.importorskip("tensorboard")
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Your own Hugging Face model"):]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)  # its TensorBoard logs go to runs/ here
    monkeypatch.setenv("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", out).group(1))
    assert accuracy > 0.9, out  # a word's presence: learnable by the tiny model in a few epochs
    assert any((tmp_path / "runs" / "hf-example").iterdir()), "TensorBoard wrote its event file"
