"""The reference solution's observations: the instructor's source notebook, run the same way
as a submission (sandboxed, judges stripped), once per content hash.

The folder ``<cache>/<assignment>-<hash>/`` holds one schema-1 observation file per test
cell; ``hash`` covers the source notebook's bytes, the library version and the grading
environment, so editing a notebook, upgrading ``leaklab`` or changing the profile recomputes
it. Only the grader writes the cache; no sandbox can see it. Before it is used, every judge
must pass on the reference itself (``judge(ref, ref)``), so a broken judge or a broken
source notebook stops grading with the cell named, before any student is graded.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import nbformat
from .judge import judge_cell, judges_of, kernel_source, oracles_of

#: Threads of one kernel (torch, BLAS): fixed, so a grade never depends on the machine's core
#: count and parallel graders do not oversubscribe the cores (workers = cores // KERNEL_THREADS).
KERNEL_THREADS = 2

#: Environment of every grading kernel (also the reference's): the ci profile (the hidden
#: thresholds are set for it; ``LEAKLAB_GRADER_PROFILE`` makes it win over a notebook's PROFILE
#: line), no progress bars, no network look-ups, inline plots, :data:`KERNEL_THREADS` threads.
GRADING_ENV = {"LEAKLAB_PROFILE": "ci", "LEAKLAB_GRADER_PROFILE": "ci", "LEAKLAB_PROGRESS": "0", "HF_HUB_OFFLINE": "1",
               "MPLBACKEND": "module://matplotlib_inline.backend_inline", "PYTHONWARNINGS": "ignore",
               "OMP_NUM_THREADS": str(KERNEL_THREADS), "MKL_NUM_THREADS": str(KERNEL_THREADS)}


#: Per-cell limit of the reference run (seconds): its cells train the language models that the
#: students' kernels load from the cache, which can outlast a student's per-cell limit on a slow machine.
REFERENCE_CELL_SECONDS = 1800


class ReferenceFailure(RuntimeError):
    """The instructor's reference solution stops early or fails one of its own judges: nobody
    can be graded against it, so a grading run stops (it is never one student's error)."""


def cache_root() -> Path:
    """``$LEAKLAB_CACHE_DIR/../reference`` style location: ``~/.cache/leaklab/reference`` unless
    ``LEAKLAB_REFERENCE_CACHE`` names another folder."""
    env = os.environ.get("LEAKLAB_REFERENCE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "leaklab" / "reference"


def lm_cache() -> Path:
    """The language-model cache the kernels read (a5 trains its models once, in the reference run)."""
    from leaklab.lm import cache_dir

    return cache_dir()


def data_dir() -> Path | None:
    """The data folder the kernels may read: ``$LEAKLAB_DATA_DIR`` or ``~/.cache/leaklab`` if present."""
    env = os.environ.get("LEAKLAB_DATA_DIR")
    path = Path(env) if env else Path.home() / ".cache" / "leaklab"
    return path.resolve() if path.is_dir() else None


def kernel_env(lm_dir: Path | None = None) -> list[str]:
    """``NAME=VALUE`` pairs for :attr:`SandboxKernelManager.kernel_env`."""
    env = dict(GRADING_ENV)
    env["LEAKLAB_CACHE_DIR"] = str(lm_dir or lm_cache())
    if data_dir() is not None:
        env["LEAKLAB_DATA_DIR"] = str(data_dir())
    return [f"{k}={v}" for k, v in env.items()]


def readable(folder: Path) -> None:
    """Make a cache the sandboxed kernels read world-readable (its entries are written 0700 by
    ``tempfile.mkdtemp``, out of the sandbox uid's reach); nothing in it is secret."""
    if not folder.is_dir():
        return
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, 0o755 if path.is_dir() else 0o644)


def content_hash(source: Path) -> str:
    """SHA-256 over the source notebook, the library's version *and its source files* (a change
    to a profile or a training function changes the reference's observations without a new
    version number) and :data:`GRADING_ENV`."""
    import leaklab

    h = hashlib.sha256(Path(source).read_bytes())
    h.update(json.dumps({"leaklab": leaklab.__version__, "env": GRADING_ENV}, sort_keys=True).encode())
    h.update(_library_digest(Path(leaklab.__file__).parent))
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _library_digest(folder: Path) -> bytes:
    """SHA-256 of the library's ``*.py`` files (names and bytes), read once per process."""
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.digest()


def run_notebook(nb, config, *, lm_dir: Path, rw: bool = False, oracle_sections: dict[str, str] | None = None):
    """Execute ``nb`` in a sandboxed kernel, its victims served by an oracle built from
    ``oracle_sections`` (grade_id -> code); returns ``(nb, resources)`` (scratch and oracle kept:
    release them with :func:`discard`)."""
    from .sandbox import SandboxedExecute

    config = copy.deepcopy(config)
    if rw:                      # the reference run trains what every kernel then reads (a5's models): the
        config.Execute.timeout = max(config.Execute.timeout or 0, REFERENCE_CELL_SECONDS)   # instructor's code,
        config.SandboxedExecute.notebook_timeout = max(config.SandboxedExecute.notebook_timeout or 0,  # so its
                                                       2 * REFERENCE_CELL_SECONDS)          # cells get longer
        if config.SandboxedExecute.get("cell_cpu_seconds"):
            config.SandboxedExecute.cell_cpu_seconds = max(config.SandboxedExecute.cell_cpu_seconds,
                                                           KERNEL_THREADS * REFERENCE_CELL_SECONDS)
    ro = [p for p in (data_dir(), None if rw else lm_dir) if p is not None and Path(p).exists()]
    config.SandboxKernelManager.ro_paths = [str(p) for p in ro]
    config.SandboxKernelManager.rw_paths = [str(lm_dir)] if rw else []
    config.SandboxKernelManager.kernel_env = kernel_env(lm_dir)
    ep = SandboxedExecute(config=config)
    return ep.preprocess(nb, {"metadata": {"path": "."}, "leaklab": {"oracle_sections": oracle_sections or {}}})


def run_source(nb, config, *, lm_dir: Path | None = None, rw: bool = False):
    """Run a source notebook as the grader runs a submission: judge and oracle regions cut out
    of the kernel's copy, the victims served by the grader's oracle.

    Returns:
        ``(resources, judges)``: the run's resources (release them with :func:`discard`) and
        grade_id -> judge code.
    """
    judges, oracles = judges_of(nb.cells), oracles_of(nb.cells)
    run = copy.deepcopy(nb)
    for cell in run.cells:
        cell.source = kernel_source(cell.source)
    _, res = run_notebook(run, config, lm_dir=lm_dir or lm_cache(), rw=rw, oracle_sections=oracles)
    return res, judges


def self_check(res, judges: dict[str, str]) -> dict[str, str]:
    """grade_id -> reason, for every judge that fails on the run's own observations (judge(ref, ref))."""
    obs = Path(res["leaklab"]["scratch"]) / "observations"
    failed = {}
    for gid, code in judges.items():
        ok, why = judge_cell(code, gid, obs, obs, res["leaklab"].get("oracle"))
        if not ok:
            failed[gid] = why
    return failed


def discard(res) -> None:
    """Stop a run's oracle and delete its scratch folder."""
    server = res["leaklab"].pop("oracle", None)
    if server is not None:
        server.close()
    shutil.rmtree(res["leaklab"]["scratch"], ignore_errors=True)


def reference_for(assignment: str, source: Path, config, cache: Path | None = None) -> Path:
    """The folder of the reference observations of ``assignment`` (computed if missing).

    Args:
        assignment: the assignment id. source: the instructor's source notebook.
        config: the traitlets config of the grading run (sandbox, limits, timeouts).
        cache: where cached references live (default :func:`cache_root`).

    Raises:
        ReferenceFailure: the reference stopped early, or a judge fails on the reference itself
            (the message names the cell and the reason).
    """
    import fcntl

    folder = (cache or cache_root()) / f"{assignment}-{content_hash(source)[:16]}"
    if (folder / "COMPLETE").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "a") as lock:   # graders on one machine: one run
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "COMPLETE").exists():
            _compute_reference(assignment, source, config, folder)
    return folder


def _compute_reference(assignment: str, source: Path, config, folder: Path) -> None:
    nb = nbformat.read(str(source), as_version=4)
    lm = lm_cache()
    lm.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="leaklab-reference-lm-") as tmp:
        os.chmod(tmp, 0o777)                                 # the reference kernel fills a private LM cache
        res, judges = run_source(nb, config, lm_dir=Path(tmp), rw=True)
        for entry in Path(tmp).iterdir():                    # ...which the grader copies into the shared one
            if not (lm / entry.name).exists() and not entry.name.startswith("."):
                shutil.copytree(entry, lm / entry.name, symlinks=False)
    readable(lm)
    try:
        if res["leaklab"].get("stopped"):
            raise ReferenceFailure(f"the reference solution of {assignment} stopped early: {res['leaklab']['stopped']}")
        failed = self_check(res, judges)
        if failed:
            gid, why = next(iter(failed.items()))
            raise ReferenceFailure(f"the reference solution of {assignment} fails its own judge {gid}: {why}")
        tmp_folder = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp_folder, ignore_errors=True)
        shutil.copytree(Path(res["leaklab"]["scratch"]) / "observations", tmp_folder)
        (tmp_folder / "COMPLETE").write_text("ok\n")
        shutil.rmtree(folder, ignore_errors=True)
        tmp_folder.rename(folder)
    finally:
        discard(res)
