"""The course's public repository, written into the notebooks, and the student copy (issue 15 item 7).

One setting says where students open the notebooks: ``[course] repository`` (a GitHub address) and
``branch`` in ``course.toml`` at the top of this repository. That repository is the public *student
copy* that ``python -m autograder student-copy DIR`` builds — ``release/``, ``lib/`` and a student
README, nothing of ``source/``, ``autograder/`` or ``tests/``. Every nbgrader course LeakLab prepares
(``release``, ``grade``, ``demo``, ``course init``) *stamps* its copy of each source notebook with it
before nbgrader generates the assignment, so the released notebook, its checksums and the gradebook
agree:

* the first code cell's install line becomes
  ``LEAKLAB_PIP = os.environ.get("LEAKLAB_PIP", "leaklab @ git+<repository>.git@<branch>#subdirectory=lib")``;
* an "Open in Colab" badge goes under the title of the header, linking
  ``https://colab.research.google.com/github/<owner>/<name>/blob/<branch>/release/<a>/<a>.ipynb``.

``course.toml`` ships with the placeholder :data:`PLACEHOLDER`. ``release`` and ``student-copy``
refuse it; ``release --draft`` builds a *draft* instead: no badge, a "Draft release" line under the
title, and an empty install line, so that the first cell on Colab stops with a message saying the
copy is a draft (never a pip error about a repository that does not exist). The committed
``release/`` of this repository is such a draft until the course's public address is chosen.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

if sys.version_info >= (3, 11):
    import tomllib
else:                                              # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
SETTINGS_FILE = REPO / "course.toml"
#: the address ``course.toml`` ships with; refused by ``release`` and ``student-copy``
PLACEHOLDER = "https://github.com/leaklab/leaklab"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
#: the set-up cell's install line as ``source/`` holds it; stamping replaces the whole line
INSTALL_LINE = re.compile(r'^LEAKLAB_PIP = os\.environ\.get\("LEAKLAB_PIP", .*$', re.MULTILINE)
DRAFT_NOTE = ("> **Draft release.** No course repository is set, so this copy has no *Open in Colab* link and "
              "its first cell cannot install the course library on Colab. Open the notebook from the link "
              "your instructor published.")
_GITHUB = re.compile(r"^https://(?i:github\.com)/(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/"
                     r"(?P<name>[A-Za-z0-9._-]+?)(?:\.git)?/?$")
_BRANCH = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/-]{0,99}$")


class CourseSettingsError(ValueError):
    """``course.toml`` is missing, malformed, or holds the placeholder where a real address is needed."""


@dataclass(frozen=True)
class Settings:
    """The course repository, or none (a draft).

    Attributes:
        repository: ``https://github.com/<owner>/<name>`` (no ``.git``), or ``None`` for a draft.
        branch: the branch students open and install from (default ``main``).
    """
    repository: str | None
    branch: str = "main"

    @property
    def draft(self) -> bool:
        return self.repository is None

    @property
    def owner_name(self) -> str:
        m = _GITHUB.match(self.repository or "")
        return f"{m['owner']}/{m['name']}"

    @property
    def pip_spec(self) -> str:
        """What the first cell installs on Colab (``""`` in a draft)."""
        return "" if self.draft else f"leaklab @ git+{self.repository}.git@{self.branch}#subdirectory=lib"

    def colab_url(self, assignment: str) -> str:
        return (f"https://colab.research.google.com/github/{self.owner_name}/blob/{self.branch}/"
                f"release/{assignment}/{assignment}.ipynb")


def check_repository(repository: str, branch: str = "main") -> Settings:
    """Validate a course repository address.

    Args:
        repository: ``https://github.com/<owner>/<name>`` (a trailing ``.git`` or ``/`` is dropped).
        branch: a git branch name.

    Returns:
        The settings (never a draft).

    Raises:
        CourseSettingsError: the placeholder, not a GitHub address (Colab opens notebooks from GitHub
            only), or a malformed branch; the message shows the expected form.
    """
    m = _GITHUB.match(repository.strip())
    if not m:
        raise CourseSettingsError(
            f"course repository {repository!r} is not a GitHub address: write it as "
            "https://github.com/<owner>/<name> (Colab's 'Open in Colab' links open notebooks from GitHub only)")
    clean = f"https://github.com/{m['owner']}/{m['name']}"
    if _is_placeholder(clean):
        raise CourseSettingsError(
            f"course.toml's repository is still the placeholder {PLACEHOLDER}: set [course] repository to the "
            "public GitHub repository you publish the student copy in (python -m autograder student-copy DIR "
            "builds it), or build a draft for local use with `python -m autograder release --draft` "
            "(`make release DRAFT=1`)")
    if not _BRANCH.match(branch) or ".." in branch:
        raise CourseSettingsError(f"course branch {branch!r} is not a git branch name (for example main)")
    return Settings(clean, branch)


def read_settings(path: Path = SETTINGS_FILE, *, draft: bool = False) -> Settings:
    """The course settings from ``course.toml``.

    Args:
        path: the settings file.
        draft: accept the placeholder, returning a draft (``repository=None``); a real address is
            returned as it is, so a draft build of a configured course still gets its badges.

    Raises:
        CourseSettingsError: the file is missing or not TOML, ``[course] repository`` is missing or not
            a GitHub address (also with ``draft``: a mistyped address is never silently a draft), or it is
            the placeholder and ``draft`` is false.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CourseSettingsError(f"{path} is missing: it holds [course] repository = \"https://github.com/"
                                  "<owner>/<name>\" (the public student copy)") from None
    except tomllib.TOMLDecodeError as err:
        raise CourseSettingsError(f"{path} is not valid TOML ({err})") from None
    course = data.get("course", {})
    repository, branch = course.get("repository"), course.get("branch", "main")
    if not isinstance(repository, str) or not isinstance(branch, str):
        raise CourseSettingsError(f"{path} needs a [course] table with repository = \"https://github.com/"
                                  "<owner>/<name>\" and optionally branch = \"main\" (both strings)")
    if draft and _is_placeholder(repository):
        return Settings(None, branch)
    return check_repository(repository, branch)


def _is_placeholder(repository: str) -> bool:
    m = _GITHUB.match(repository.strip())
    return m is not None and f"https://github.com/{m['owner']}/{m['name']}".lower() == PLACEHOLDER


def stamp(nb: nbformat.NotebookNode, assignment: str, settings: Settings) -> nbformat.NotebookNode:
    """Write the course repository into a source notebook (in place), as the module docstring says.

    Args:
        nb: the instructor notebook. The badge (or the draft line) goes under cell 0's first line when
            cell 0 is a markdown header starting with its ``# `` title; the install address replaces the
            ``LEAKLAB_PIP = os.environ.get("LEAKLAB_PIP", ...)`` line of the first code cell. A notebook
            without them (an instructor's own assignment without LeakLab's set-up cell) is left as it is
            there; ``tests/test_publish.py`` checks that all five LeakLab notebooks have both.
        assignment: the assignment's folder name (the Colab link's path).
        settings: from :func:`read_settings`.

    Returns:
        ``nb``, stamped.

    Raises:
        ValueError: the notebook is already stamped, or its first code cell has the install line twice.
    """
    header = nb.cells[0] if nb.cells else None
    if header is not None and header.cell_type == "markdown" and header.source.startswith("# "):
        if COLAB_BADGE in header.source or "**Draft release.**" in header.source:
            raise ValueError(f"{assignment}: the header is already stamped with a course repository")
        title, _, rest = header.source.partition("\n")
        line = DRAFT_NOTE if settings.draft else \
            f"[![Open In Colab]({COLAB_BADGE})]({settings.colab_url(assignment)})"
        header.source = f"{title}\n\n{line}\n{rest}"
    code = next((c for c in nb.cells if c.cell_type == "code"), None)
    found = len(INSTALL_LINE.findall(code.source)) if code is not None else 0
    if found > 1:
        raise ValueError(f"{assignment}: the first code cell has {found} `LEAKLAB_PIP = ...` lines; keep one")
    if found:
        comment = "   # a draft release: no course repository" if settings.draft else ""
        line = f'LEAKLAB_PIP = os.environ.get("LEAKLAB_PIP", {json.dumps(settings.pip_spec)}){comment}'
        code.source = INSTALL_LINE.sub(lambda _: line, code.source)
    return nb


def stamp_file(path: Path, assignment: str, settings: Settings) -> None:
    """:func:`stamp` the notebook at ``path`` and write it back (nbformat 4, the source's own layout)."""
    nb = nbformat.read(path, as_version=4)
    nbformat.write(stamp(nb, assignment, settings), path)


def stamp_bytes(data: bytes, assignment: str, settings: Settings) -> bytes:
    """:func:`stamp` a notebook given as bytes; returns the stamped notebook's bytes."""
    nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    return (nbformat.writes(stamp(nb, assignment, settings)) + "\n").encode("utf-8")


STUDENT_README = """\
# LeakLab — the course notebooks

Assignments on stealing and leaking machine-learning models: watermarking by backdooring,
query-based model extraction, membership inference, MI-Face model inversion and GPT-2 training-data
extraction. Each notebook explains the paper it follows, asks you to implement the attack, and checks
your work with visible tests; your instructor's grader re-runs it with hidden tests.

| Assignment | Open it |
|---|---|
{rows}

## On Google Colab (a GPU)

1. Click the assignment's *Open in Colab* badge above (or in Colab: *File → Open notebook → GitHub*,
   `{owner_name}`).
2. *Runtime → Change runtime type → T4 GPU*.
3. Run the first cell. It installs the course library,

       pip install "{pip_spec}"

   and prints the profile it chose (`full` on a GPU, `ci` elsewhere), why, and the device. If pip
   fails, the cell shows pip's own messages and what to do.
4. Hand in what your instructor asks for (*File → Download → Download .ipynb*).

## On your own computer (JupyterLab)

    git clone {repository}.git
    cd {name}
    python3 -m venv .venv && . .venv/bin/activate
    pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu   # CPU-only PyTorch
    pip install ./lib jupyterlab
    jupyter lab release/a1_watermarking/a1_watermarking.ipynb

The CPU-only line installs PyTorch without its CUDA libraries (a few hundred MB instead of several
GB); leave it out on a machine with an NVIDIA GPU. Python 3.10 or newer. The first cell only imports
the installed library; the notebooks read or download their data on first use (printed as they do).

## Which run is graded

Each notebook's first cell has a `PROFILE` line: `None` picks `full` on a GPU and `ci` elsewhere;
`"ci"` or `"full"` chooses. The grader re-runs every notebook in `ci`, so your written answers
should refer to a `ci` run; each notebook's header says so.
"""


def student_readme(settings: Settings, assignments: list[str]) -> str:
    """The student copy's README: a badge per notebook, the Colab steps and the laptop set-up lines."""
    rows = "\n".join(f"| `{a}` | [![Open In Colab]({COLAB_BADGE})]({settings.colab_url(a)}) · "
                     f"[release/{a}/{a}.ipynb](release/{a}/{a}.ipynb) |" for a in assignments)
    return STUDENT_README.format(rows=rows, owner_name=settings.owner_name, pip_spec=settings.pip_spec,
                                 repository=settings.repository, name=settings.owner_name.split("/")[1])


#: what the student copy's lib/ leaves out: build products and caches
LIB_IGNORE = shutil.ignore_patterns("*.egg-info", "build", "dist", "__pycache__", "*.pyc", ".pytest_cache")


def student_copy(out: Path, settings: Settings, source_dir: Path = REPO / "source",
                 assignments: list[str] | None = None) -> Path:
    """Build the public student copy in ``out``: ``release/`` (stamped), ``lib/``, ``README.md``, ``.gitignore``.

    Push ``out`` to ``settings.repository`` (branch ``settings.branch``); the badges and the first
    cells' install line point there.

    Args:
        out: a folder that does not exist, is empty, or holds only ``.git`` (a clone of the student
            repository to commit the build in).
        settings: a configured course (:func:`read_settings` without ``draft``).
        source_dir: the instructor notebooks.
        assignments: which to include (default: all).

    Returns:
        ``out``.

    Raises:
        CourseSettingsError: ``settings`` is a draft. FileExistsError: ``out`` is not empty.
        RuntimeError: nbgrader rejected a source notebook.
    """
    from .pipeline import assignments_in, release

    if settings.draft:
        raise CourseSettingsError("a student copy needs the course repository: set [course] repository in "
                                  f"{SETTINGS_FILE.name} (the placeholder {PLACEHOLDER} is refused)")
    out = Path(out)
    if out.exists() and any(p.name != ".git" for p in out.iterdir()):
        raise FileExistsError(f"{out} is not empty: build the student copy into a new folder, or into a clone "
                              "of the student repository emptied of everything but its .git")
    assignments = assignments or assignments_in(source_dir)
    out.mkdir(parents=True, exist_ok=True)
    release(source_dir, out / "release", assignments, settings=settings)
    shutil.copytree(REPO / "lib", out / "lib", ignore=LIB_IGNORE)
    (out / "README.md").write_text(student_readme(settings, assignments), encoding="utf-8")
    (out / ".gitignore").write_text(".venv/\n__pycache__/\n*.egg-info/\n.ipynb_checkpoints/\n", encoding="utf-8")
    return out
