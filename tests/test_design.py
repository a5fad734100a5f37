"""docs/design.md is the design the code refers to: every "docs/design.md §N"
in the repository names a section that exists, and the README links to it."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SOURCES = ["avil/**/*.py", "csrc/**/*.cpp", "csrc/**/*.cu", "csrc/**/*.h", "tests/**/*.py", "benchmarks/**/*.py",
           "README.md", "docs/*.md", "notebooks/*.ipynb"]


def test_every_design_reference_names_a_section():
    design = (ROOT / "docs" / "design.md").read_text()
    sections = set(re.findall(r"^## (\d+)\. ", design, flags=re.M))
    assert {"1", "2", "3", "4", "5", "6", "7"} <= sections
    references = {}
    for pattern in SOURCES:
        for path in ROOT.glob(pattern):
            for number in re.findall(r"docs/design\.md §(\d+)", path.read_text(errors="replace")):
                references.setdefault(number, []).append(str(path.relative_to(ROOT)))
    assert references, "the code refers to the design"
    missing = {n: files for n, files in references.items() if n not in sections}
    assert not missing, f"references to sections docs/design.md does not have: {missing}"


def test_readme_links_the_design():
    assert "](docs/design.md)" in (ROOT / "README.md").read_text()
