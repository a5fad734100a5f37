"""environment.yml pins the same versions as requirements.txt."""
import re

from avil.reproduce import ROOT


def pins(text):
    return dict(re.findall(r"^\s*(?:-\s*)?([A-Za-z0-9_.-]+)==([^\s#]+)", text, flags=re.M))


def test_environment_yml_matches_requirements():
    env = pins((ROOT / "environment.yml").read_text())
    req = pins((ROOT / "requirements.txt").read_text())
    assert env.pop("torch") == "2.13.0"
    assert env == req
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q torch==2.13.0" in makefile
