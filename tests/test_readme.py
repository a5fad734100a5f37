"""The README's bring-your-own-tasks example runs as written."""
import re
from pathlib import Path

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
