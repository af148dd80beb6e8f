"""environment.yml and lib/pyproject.toml name the same dependencies; the pins cover them."""
from __future__ import annotations

import re
import tomllib

import yaml


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject(repo):
    project = tomllib.loads((repo / "lib" / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in ("course", "test"):
        wanted |= set(project["optional-dependencies"][extra])
    env = yaml.safe_load((repo / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e ./lib[course,test]" in pip
    assert {p for p in pip if not p.startswith("-e")} == wanted


def test_constraints_pin_every_dependency_exactly(repo):
    pins = {}
    for line in (repo / "lib" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    project = tomllib.loads((repo / "lib" / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for e in project["optional-dependencies"].values() for d in e]
    missing = [d for d in deps if _name(d) not in pins]
    assert not missing, f"lib/constraints.txt does not pin {missing}"
