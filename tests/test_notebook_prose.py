"""No hand-written result in a notebook's markdown: a sentence that states or
reads a measured number is rendered by a code cell from the results, so a
rerun describes itself. Markdown may hold numbers only for the setting (sizes,
counts, the confidence level) and for figures quoted from elsewhere, on a
line that names its source."""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

RESULT_LIKE = {
    "a decimal": re.compile(r"(?<![\w.\-])\d+\.\d+(?![\w.])"),
    "a percentage": re.compile(r"\d\s*%"),
    "a ±": re.compile(r"\d\s*±|±\s*\d"),
}
# Numbers that are the setting, not a result: the intervals' confidence level.
SETTING = re.compile(r"95\s*%(?=\s*(?:CI|confidence|t-interval|interval))")
# A line that names where its figure comes from: an arXiv id, or authors with the
# year (e.g. "Sener & Koltun (NeurIPS 2018)", "Xin et al., NeurIPS 2022").
SOURCE = re.compile(r"arXiv[ :]?\d{4}\.\d{4,5}"
                    r"|[A-Z][\w-]+(?: (?:&|and) [A-Z][\w-]+| et al\.)?,? \(?(?:[A-Z]\w* )?(?:19|20)\d\d\b")


def result_like_numbers(markdown: str):
    """(line, what) for every line of ``markdown`` that holds a result-like number."""
    found = []
    for line in markdown.splitlines():
        if SOURCE.search(line):
            continue
        text = SETTING.sub("", re.sub(r"`[^`]*`", "", line))  # code spans name fields and commands
        for what, pattern in RESULT_LIKE.items():
            if pattern.search(text):
                found.append((line.strip(), what))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_markdown_states_no_measured_number(path):
    nb = nbformat.read(path, as_version=4)
    found = [(i, line, what) for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown"
             for line, what in result_like_numbers(cell.source)]
    assert not found, "render these from the results in a code cell:\n" + "\n".join(
        f"  cell {i}: {what}: {line}" for i, line, what in found)


@pytest.mark.parametrize("planted", [
    "αVIL reaches 93.2 on the test set.",
    "The target gains 4 points, 12 % of the errors.",
    "a difference of +1 ± 2 points",
    "single_task: 0.72",
    "αVIL is 80 % accurate.",
    "the smallest difference these seeds would have detected with 80 % power",  # the rendered sentence states it
    "αVIL beats uniform by 2.5 points on the 2000-example suite.",  # a size is not a source
])
def test_the_scanner_finds_a_planted_number(planted):
    assert result_like_numbers(f"# Results\n\nSome method text.\n{planted}\n")


@pytest.mark.parametrize("allowed", [
    "Every task has 1,000 training examples, trained for 5 epochs in batches of 32.",
    "Sener & Koltun (NeurIPS 2018) report 97.23 % for the left digit.",
    "Xin et al., NeurIPS 2022, find 1.5 points between the two.",
    "Each difference comes with its paired 95 % CI over seeds.",
    "Set `FitConfig(weight_min=0.05)` to change the floor.",
    "arXiv 2405.07769",
])
def test_the_scanner_lets_settings_and_sourced_figures_through(allowed):
    assert not result_like_numbers(allowed)
