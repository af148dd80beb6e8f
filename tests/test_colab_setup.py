"""The notebooks' first cell as a student meets it (issue 15 item 7), offline.

The cell is taken from the released notebooks and run as a script by a *fresh* virtual
environment that has no leaklab: its other packages come from this environment through a
``.pth`` line pointing at a folder of links to them (leaklab's own files left out, so nothing
of the project is importable before the cell installs it). A stand-in ``google.colab`` module
makes the cell take its Colab branch; ``LEAKLAB_PIP`` points the install at a copy of the local
``lib/`` and pip is kept off the network (``PIP_NO_INDEX``), so no test downloads anything.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "release").glob("*/*.ipynb"))


def _setup_cells() -> list[str]:
    return ["".join(json.loads(p.read_text())["cells"][1]["source"]) for p in NOTEBOOKS]


def test_every_notebook_has_the_same_set_up_cell_with_a_visible_profile_line():
    cells = _setup_cells()
    assert len(cells) == 5 and len(set(cells)) == 1, "the five set-up cells differ"
    assert "PROFILE = None" in cells[0] and "leaklab.setup(seed=0, profile=PROFILE)" in cells[0]
    assert '"-q"' not in cells[0], "pip's own error must be shown, not silenced"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """(python of a fresh venv without leaklab, the environment for it, a copy of lib/)."""
    root = tmp_path_factory.mktemp("colab")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "env")], check=True)
    deps = root / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if "leaklab" not in entry.name and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    python = root / "env" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "deps.pth").write_text(f"{deps}\n")
    (root / "stub" / "google" / "colab").mkdir(parents=True)         # google stays a namespace package
    (root / "stub" / "google" / "colab" / "__init__.py").write_text('"""Stands in for Colab."""\n')
    lib = root / "lib"
    shutil.copytree(REPO / "lib", lib, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEAKLAB_", "PYTHON"))}
    # PIP_NO_BUILD_ISOLATION="0" turns build isolation *off* (pip's inverted environment flag): lib/ builds with the
    # setuptools of this environment instead of one fetched from an index. CUDA_VISIBLE_DEVICES="" keeps the
    # expected profile "ci" on a GPU machine too.
    env.update(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1",
               LEAKLAB_PROGRESS="0", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    (root / "cell.py").write_text(_setup_cells()[0])
    return python, env, root


def _run_cell(fresh, **env):
    python, base, root = fresh
    return subprocess.run([str(python), str(root / "cell.py")], env={**base, **env}, cwd=root,
                          capture_output=True, text=True, timeout=600)


def test_without_colab_and_without_leaklab_the_cell_says_how_to_install_it(fresh):
    run = _run_cell(fresh)
    assert run.returncode != 0
    assert "ModuleNotFoundError: leaklab is not installed" in run.stderr and "pip install ./lib" in run.stderr


def test_a_draft_release_on_colab_says_it_is_a_draft_instead_of_calling_pip(fresh):
    python, _, root = fresh
    assert 'os.environ.get("LEAKLAB_PIP", "")' in _setup_cells()[0], "the committed release/ is a draft"
    run = _run_cell(fresh, PYTHONPATH=str(root / "stub"))
    assert run.returncode != 0
    assert "RuntimeError: this copy of the notebook is a draft release" in run.stderr, run.stderr[-2000:]
    assert "pip" not in run.stderr.split("RuntimeError")[0]              # pip never ran


def test_a_failed_install_on_colab_shows_pips_own_error_and_what_to_do(fresh):
    python, _, root = fresh
    run = _run_cell(fresh, PYTHONPATH=str(root / "stub"), LEAKLAB_PIP=str(root / "no-such-folder"))
    assert run.returncode != 0
    assert "ERROR:" in run.stderr and "does not exist" in run.stderr             # pip's own message, not hidden by -q
    assert "pip could not install the course library" in run.stderr and "send your instructor" in run.stderr


def test_on_colab_the_cell_installs_the_library_and_sets_up(fresh):
    python, _, root = fresh
    run = _run_cell(fresh, PYTHONPATH=str(root / "stub"), LEAKLAB_PIP=str(root / "lib"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "leaklab 0.1.0: profile=ci (no GPU found; set PROFILE to choose), device=cpu" in run.stdout
    where = subprocess.run([str(python), "-c", "import leaklab; print(leaklab.__file__)"], env=fresh[1],
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(root / "env")), where                    # installed into the fresh venv
