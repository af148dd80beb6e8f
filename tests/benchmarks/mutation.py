"""Mutation score of the graded unit tests, per assignment and per function (issue 18 item 2).

    .venv/bin/pip install -c lib/constraints.txt -e "lib[bench]"      # mutmut, once
    python tests/benchmarks/mutation.py [ASSIGNMENT ...] [--limit-s 60] [--only F1,F2] [--json OUT]

**Mutants** come from mutmut (3.x): its own operators, through ``create_mutations`` — the engine
behind ``mutmut run`` — applied to the lines inside each ``### BEGIN SOLUTION`` / ``### END
SOLUTION`` region of the source notebook, one mutant at a time. mutmut rather than cosmic-ray: its
engine is a function of a source string (a notebook cell needs no file tree, no session database,
no test command per mutant), its operators are the ones its users know, and it is pinned in
``lib/constraints.txt``. **The runner is ours**, as ``tests/test_a*_invariants.py`` run wrong answers:
mutmut's own runner imports the module under test into pytest processes, while these tests are
notebook cells judged by the grader against a reference run. The source notebook runs once in a live
kernel (:mod:`kernel`); each mutant replaces its solution cell, the part's visible and hidden unit
tests — the test cells named like the solution cell, without the ``_e2e_`` ones — re-run, judged as
the grader judges them, and the original cell is restored.

A mutant is **killed** when a targeted test fails (an error, the judge's verdict) or runs past its time
limit (``--limit-s``, or three times the test's time with the original solution if that is longer; the kernel
is interrupted); it **survives** when every targeted test passes. A
survivor listed in ``mutation_equivalents.toml`` (beside this file, keyed by cell, function and the
changed line) with a one-line reason is counted as **equivalent**: the mutant computes the same
answer. The score is killed / (mutants − equivalent). The goal (issue 18): ≥ 90% per assignment.
Prints a table per function and the survivors (each with its key, to judge or to kill with a test).
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
EQUIVALENTS = HERE / "mutation_equivalents.toml"
ASSIGNMENTS = ["a1_watermarking", "a2_query_extraction", "a3_membership_inference", "a4_model_inversion",
               "a5_gpt2_extraction"]
DECORATOR_MARK = "#mutation-benchmark-decorator@"
REGION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.DOTALL)


@dataclass
class Mutant:
    cell: str          # the solution cell's grade_id
    function: str      # the top-level function the mutation is in
    line: int          # 1-based line in the cell
    before: str
    after: str
    source: str        # the whole mutated cell

    @property
    def key(self) -> str:
        """``cell:function:line before -> line after``, runs of blanks as one (the equivalents' key)."""
        text = f"{self.cell}:{self.function}:{self.before.strip()} -> {self.after.strip()}"
        return re.sub(r"\s+", " ", text)


@dataclass
class Result:
    cell: str
    function: str
    line: int
    key: str
    status: str        # killed | survived | equivalent | timeout (killed) | invalid (does not run: killed)
    by: str            # the first test that failed, or why it counts as equivalent
    seconds: float


def solution_lines(source: str) -> set[int]:
    """1-based line numbers of a cell that lie inside its solution regions (markers excluded)."""
    lines = set()
    for m in REGION.finditer(source):
        first = source[:m.start(1)].count("\n") + 1
        lines |= set(range(first, first + m.group(1).count("\n")))
    return lines


def mutants_of(cell_id: str, source: str) -> list[Mutant]:
    """mutmut's mutants of the solution lines of one cell, each as the whole mutated cell."""
    import os

    from mutmut.mutation.file_mutation import create_mutations

    os.chdir(REPO)                   # mutmut reads its configuration (none here: defaults) from the working folder

    # mutmut skips decorated functions (its trampolines cannot wrap them); this runner needs no trampoline, so a
    # decorator line (``@torch.no_grad()``) is a comment while mutating and is put back in each mutant
    hidden = re.sub(r"^@", DECORATOR_MARK, source, flags=re.MULTILINE)
    module, mutations, _, _ = create_mutations(f"{cell_id}.py", hidden, covered_lines=solution_lines(source))
    out, seen, keys = [], set(), {}
    original = source.splitlines()
    for m in mutations:
        mutated = module.deep_replace(m.original_node, m.mutated_node).code.replace(DECORATOR_MARK, "@")
        if mutated == source or mutated in seen:
            continue
        seen.add(mutated)
        changed = [d for d in difflib.ndiff(original, mutated.splitlines()) if d[:1] in "+-"]
        before = next((d[2:] for d in changed if d[0] == "-"), "")
        after = " / ".join(d[2:].strip() for d in changed if d[0] == "+")
        line = next(i for i, (a, b) in enumerate(zip(original + [""], mutated.splitlines() + [""]), 1) if a != b)
        fn = m.contained_by_top_level_function
        mutant = Mutant(cell_id, fn.name.value if fn is not None else "<module>", line, before, after, mutated)
        keys[mutant.key] = keys.get(mutant.key, 0) + 1
        if keys[mutant.key] > 1:                     # the same text change at another place of the line
            mutant.after += f"  #{keys[mutant.key]}"
        out.append(mutant)
    return out


def load_equivalents() -> dict[str, str]:
    if not EQUIVALENTS.exists():
        return {}
    data = tomllib.loads(EQUIVALENTS.read_text(encoding="utf-8"))
    return {k: v for section in data.values() for k, v in section.items()}


def run_guarded(kernel, code: str, limit_s: float):
    """``kernel.run`` with a time limit: past it the kernel is interrupted and ``None`` returned."""
    try:
        return kernel.run(code, timeout=limit_s)
    except TimeoutError:
        kernel.km.interrupt_kernel()
        try:
            kernel.run("pass", timeout=120)           # drain the interrupted cell's replies
        except TimeoutError:
            pass
        return None


def run_test(kernel, cell, limit_s: float | None):
    """Run a test cell as the grader does (its judge decides); ``None`` past ``limit_s`` seconds."""
    from kernel import grade_id

    from autograder.judge import kernel_source

    gid = grade_id(cell)
    for old in kernel.observations.glob(f"{gid}.*"):
        old.unlink()
    if kernel.oracle is not None:
        kernel.oracle.reset(gid)
        kernel.oracle.cell = gid
    try:
        out = run_guarded(kernel, kernel_source(cell.source), limit_s) if limit_s else kernel.run(kernel_source(cell.source))
    finally:
        if kernel.oracle is not None:
            kernel.oracle.cell = None
    return None if out is None else kernel.judge(cell, out)


def score(assignment: str, limit_s: float, only: set[str] | None, equivalents: dict[str, str]) -> list[Result]:
    import tempfile

    from kernel import executed_reference, grade_id, is_test

    path = REPO / "source" / assignment / f"{assignment}.ipynb"
    results: list[Result] = []
    started = time.perf_counter()
    with executed_reference(path, tempfile.mkdtemp(prefix=f"mutation-{assignment}-")) as (kernel, nb, outcomes):
        failing = [g for g, o in outcomes.items() if not o.ok]
        if failing:
            raise SystemExit(f"{assignment}: the reference fails {failing}; no mutation score without a green reference")
        print(f"{assignment}: reference run {time.perf_counter() - started:.0f} s", flush=True)
        tests = {grade_id(c): c for c in nb.cells if is_test(c)}
        for cell in nb.cells:
            gid = grade_id(cell)
            if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("solution"):
                continue
            part = gid.removesuffix("_solution")
            targets = [t for t in tests if t.startswith(part + "_") and "_e2e" not in t]
            mutants = [m for m in mutants_of(gid, cell.source) if not only or m.function in only]
            if not mutants:
                continue
            limits = {}                                  # per test: the limit, or 3x the original's time if longer
            for t in targets:
                t0 = time.perf_counter()
                out = run_test(kernel, tests[t], None)
                assert out is not None and out.ok, f"{t} fails with the original {gid}: {out}"
                limits[t] = max(limit_s, 3 * (time.perf_counter() - t0))
            for mutant in mutants:
                t0 = time.perf_counter()
                status, by = "survived", ""
                ran = run_guarded(kernel, mutant.source, limit_s)
                if ran is None or not ran.ok:
                    status, by = ("timeout", "defining the cell") if ran is None else ("invalid", ran.error[:120])
                else:
                    for t in targets:
                        out = run_test(kernel, tests[t], limits[t])
                        if out is None:
                            status, by = "timeout", t
                            break
                        if not out.ok:
                            status, by = "killed", t
                            break
                restored = kernel.run(cell.source)
                assert restored.ok, f"restoring {gid} failed: {restored.error}"
                if status == "survived" and mutant.key in equivalents:
                    status, by = "equivalent", equivalents[mutant.key]
                results.append(Result(gid, mutant.function, mutant.line, mutant.key, status, by,
                                      time.perf_counter() - t0))
                print(f"  {status:10s} {time.perf_counter() - t0:6.1f} s  {mutant.key[:150]}", flush=True)
    return results


def table(results: list[Result]) -> str:
    rows = {}
    for r in results:
        row = rows.setdefault((r.cell.split("_")[0], r.function), {"killed": 0, "survived": 0, "equivalent": 0})
        row["equivalent" if r.status == "equivalent" else "survived" if r.status == "survived" else "killed"] += 1
    lines = [f"{'assignment':10s} {'function':28s} {'mutants':>7s} {'killed':>6s} {'survived':>8s} "
             f"{'equivalent':>10s} {'score':>6s}"]
    totals: dict[str, list[int]] = {}
    for (a, fn), row in rows.items():
        n = sum(row.values())
        t = totals.setdefault(a, [0, 0, 0, 0])
        for i, v in enumerate((n, row["killed"], row["survived"], row["equivalent"])):
            t[i] += v
        denom = n - row["equivalent"]
        lines.append(f"{a:10s} {fn:28s} {n:7d} {row['killed']:6d} {row['survived']:8d} {row['equivalent']:10d} "
                     f"{(row['killed'] / denom if denom else 1):6.1%}")
    for a, (n, k, s, e) in totals.items():
        lines.append(f"{a:10s} {'ALL':28s} {n:7d} {k:6d} {s:8d} {e:10d} {(k / (n - e) if n - e else 1):6.1%}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("assignments", nargs="*", default=ASSIGNMENTS)
    ap.add_argument("--limit-s", type=float, default=60, help="time limit per mutant and test cell (default 60)")
    ap.add_argument("--only", help="only mutants in these functions (comma-separated names)")
    ap.add_argument("--json", type=Path, help="write every result here")
    args = ap.parse_args()
    try:
        import mutmut  # noqa: F401
    except ImportError:
        raise SystemExit('mutmut is missing: .venv/bin/pip install -c lib/constraints.txt -e "lib[bench]"') from None
    equivalents = load_equivalents()
    results = []
    for a in args.assignments:
        t0 = time.perf_counter()
        results += score(a, args.limit_s, set(args.only.split(",")) if args.only else None, equivalents)
        print(f"{a}: {time.perf_counter() - t0:.0f} s", flush=True)
    print()
    print(table(results))
    survivors = [r for r in results if r.status == "survived"]
    if survivors:
        print("\nsurvivors (add a test that kills each, or judge it equivalent in mutation_equivalents.toml):")
        for r in survivors:
            print(f"  {r.key}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
