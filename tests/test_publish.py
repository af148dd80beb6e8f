"""The course repository set in one place and the public student copy (issue 15 item 7)."""
from __future__ import annotations

import json
import re

import nbformat
import pytest
from kernel import read

from autograder.publish import (
    COLAB_BADGE,
    PLACEHOLDER,
    CourseSettingsError,
    Settings,
    check_repository,
    read_settings,
    stamp,
    student_copy,
)

A = "a1_watermarking"
COURSE = Settings("https://github.com/example-uni/leaklab-students", "spring-2027")


def test_the_committed_settings_hold_the_placeholder_and_release_refuses_it(repo):
    with pytest.raises(CourseSettingsError, match="placeholder.*release --draft"):
        read_settings(repo / "course.toml")
    assert read_settings(repo / "course.toml", draft=True).draft


@pytest.mark.parametrize("address, why", [
    (PLACEHOLDER, "placeholder"), (PLACEHOLDER + ".git", "placeholder"), ("https://GitHub.com/LeakLab/LeakLab", "placeholder"),
    ("https://gitlab.com/uni/course", "not a GitHub address"), ("github.com/uni/course", "not a GitHub address"),
    ("https://github.com/uni", "not a GitHub address"), ("https://github.com/uni/course/tree/main", "not a GitHub"),
])
def test_a_bad_repository_address_is_refused_with_the_expected_form(address, why):
    with pytest.raises(CourseSettingsError, match=why):
        check_repository(address)


def test_the_address_is_normalised_and_a_bad_branch_refused():
    assert check_repository("https://github.com/uni/course.git/") == Settings("https://github.com/uni/course", "main")
    for branch in ("", "a..b", "-x", "main branch"):
        with pytest.raises(CourseSettingsError, match="branch"):
            check_repository("https://github.com/uni/course", branch)


@pytest.mark.parametrize("text, why", [
    ("not = [toml", "not valid TOML"), ("[course]\nbranch = 'main'\n", "needs a \\[course\\] table"),
    ("[course]\nrepository = 3\n", "needs a \\[course\\] table"),
])
def test_a_malformed_settings_file_says_what_it_needs(tmp_path, text, why):
    (tmp_path / "course.toml").write_text(text)
    with pytest.raises(CourseSettingsError, match=why):
        read_settings(tmp_path / "course.toml", draft=True)
    with pytest.raises(CourseSettingsError, match="missing"):
        read_settings(tmp_path / "none.toml", draft=True)


def test_a_draft_accepts_only_the_placeholder_not_a_mistyped_address(tmp_path):
    (tmp_path / "course.toml").write_text('[course]\nrepository = "https://gitlab.com/uni/course"\n')
    with pytest.raises(CourseSettingsError, match="not a GitHub address"):
        read_settings(tmp_path / "course.toml", draft=True)


def test_a_configured_file_is_read(tmp_path):
    (tmp_path / "course.toml").write_text('[course]\nrepository = "https://github.com/uni/course"\nbranch = "fall"\n')
    assert read_settings(tmp_path / "course.toml") == Settings("https://github.com/uni/course", "fall")
    assert read_settings(tmp_path / "course.toml", draft=True) == Settings("https://github.com/uni/course", "fall")


def test_stamping_writes_the_install_line_and_the_badge_and_refuses_twice(repo):
    nb = nbformat.read(repo / "source" / A / f"{A}.ipynb", as_version=4)
    stamp(nb, A, COURSE)
    url = f"https://colab.research.google.com/github/example-uni/leaklab-students/blob/spring-2027/release/{A}/{A}.ipynb"
    assert nb.cells[0].source.splitlines()[2] == f"[![Open In Colab]({COLAB_BADGE})]({url})"
    spec = "leaklab @ git+https://github.com/example-uni/leaklab-students.git@spring-2027#subdirectory=lib"
    assert f'LEAKLAB_PIP = os.environ.get("LEAKLAB_PIP", "{spec}")\n' in nb.cells[1].source
    with pytest.raises(ValueError, match="already stamped"):
        stamp(nb, A, COURSE)
    bare = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("Intro"), nbformat.v4.new_code_cell("x = 1")])
    assert stamp(bare, A, COURSE).cells[0].source == "Intro" and bare.cells[1].source == "x = 1"   # left alone
    twice = 'LEAKLAB_PIP = os.environ.get("LEAKLAB_PIP", "")\n' * 2
    with pytest.raises(ValueError, match="2 `LEAKLAB_PIP"):
        stamp(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(twice)]), A, COURSE)


def test_all_five_notebooks_have_what_stamping_writes_into(repo):
    for nb_path in sorted((repo / "source").glob("*/*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        a = nb_path.parent.name
        stamp(nb, a, COURSE)
        assert COLAB_BADGE in nb.cells[0].source and a in nb.cells[0].source, a
        assert "leaklab-students.git@spring-2027" in nb.cells[1].source, a


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    out = tmp_path_factory.mktemp("student-copy")
    return student_copy(out, COURSE, assignments=[A, "a3_membership_inference"])


def test_the_student_copy_holds_only_release_lib_and_a_readme(copy):
    assert sorted(p.name for p in copy.iterdir()) == [".gitignore", "README.md", "lib", "release"]
    assert sorted(p.name for p in (copy / "release").iterdir()) == [A, "a3_membership_inference"]
    files = [p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()]
    assert not [f for f in files if re.search(r"egg-info|__pycache__|\.pyc$|^source/|^autograder/|^tests/", f)]
    assert (copy / "lib" / "pyproject.toml").is_file() and (copy / "lib" / "leaklab" / "__init__.py").is_file()


def test_the_student_copys_notebooks_differ_from_the_draft_only_in_the_address(repo, copy):
    for a in (A, "a3_membership_inference"):
        ours, draft = read(copy / "release" / a / f"{a}.ipynb"), read(repo / "release" / a / f"{a}.ipynb")
        assert len(ours.cells) == len(draft.cells)
        changed = [i for i, (x, y) in enumerate(zip(ours.cells, draft.cells)) if x.source != y.source]
        assert changed == [0, 1]
        assert COLAB_BADGE in ours.cells[0].source and "Draft release" not in ours.cells[0].source
        assert "github.com/example-uni/leaklab-students.git@spring-2027" in ours.cells[1].source
        assert "leaklab/leaklab" not in json.dumps(ours)


def test_the_student_readme_has_a_badge_per_notebook_and_working_set_up_lines(copy):
    text = (copy / "README.md").read_text()
    for a in (A, "a3_membership_inference"):
        assert f"blob/spring-2027/release/{a}/{a}.ipynb)" in text and (copy / "release" / a / f"{a}.ipynb").is_file()
    assert 'pip install "leaklab @ git+https://github.com/example-uni/leaklab-students.git@spring-2027' in text
    assert "git clone https://github.com/example-uni/leaklab-students.git\n    cd leaklab-students\n" in text
    assert "--index-url https://download.pytorch.org/whl/cpu" in text and "pip install ./lib jupyterlab" in text
    assert "make " not in text and "source/" not in text                  # nothing the copy lacks


def test_the_student_copy_refuses_a_draft_and_a_folder_in_use(tmp_path):
    with pytest.raises(CourseSettingsError, match="needs the course repository"):
        student_copy(tmp_path / "out", Settings(None))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        student_copy(tmp_path / "used", COURSE)
    assert (tmp_path / "used" / "notes.txt").read_text() == "mine"


def test_a_course_folder_is_stamped_as_release_stamps_so_its_release_is_the_committed_one(repo, tmp_path):
    from autograder.course import init

    course = init(tmp_path / "course", assignments=[A])
    assert "**Draft release.**" in read(course / "source" / A / f"{A}.ipynb").cells[0].source
    assert (course / "release" / A / f"{A}.ipynb").read_bytes() == (repo / "release" / A / f"{A}.ipynb").read_bytes()
    init(course, assignments=[A])                          # completing the course never stamps a copy twice
