"""The student's kernel in a bubblewrap sandbox, driven by nbgrader's own Execute step.

Why bubblewrap: it is Debian's maintained, setuid-free sandbox tool (Flatpak's), it needs no
daemon, and it builds exactly the view we want from mount, PID, network, IPC and UTS
namespaces in one command. Each kernel gets:

- an unprivileged user: bwrap runs as root only to build the namespaces, then ``setpriv``
  switches to a uid of its own (``61000 + n``), clears every capability, supplementary group
  and the bounding set, and sets ``no_new_privs``;
- no network: a network namespace of its own with only loopback (nothing outside the sandbox
  can be reached); the kernel's messages travel over ZeroMQ ``ipc`` sockets in its scratch
  folder, not TCP;
- a read-only view of the interpreter, the virtual environment, the ``leaklab`` library and
  the data folders; ``/usr`` read-only; no ``/home``, no ``/root``, no course folder, no
  ``source/``, no gradebook, no other submission, no grader output;
- one writable folder, its scratch (``home``, ``work`` = the notebook's cwd, ``tmp``,
  ``observations``, ``ipc``), deleted after grading;
- the victims of the graded cells only through the grader's oracle (``autograder/oracle.py``),
  whose socket ``ipc/oracle`` is the one door out of the sandbox besides the kernel's own;
- limits (``prlimit``): address space, CPU time, processes, open files, file size; the
  grader adds the total output, the CPU time of each cell (every process and thread of the
  sandbox, read with psutil: a loaded machine slows a cell but does not make it use more
  CPU, so a correct answer is not stopped because other jobs share the cores), a per-cell
  wall-clock backstop (for a cell that sleeps or blocks) and the per-notebook wall time, and
  kills the whole process tree (the PID namespace) at any of them. A stop by a wall-clock
  limit of a cell that was computing (its kernel and the oracle used at least
  :data:`BUSY_CPU_FRACTION` of a core) says so (:data:`WALL_LIMIT`): a loaded machine can
  cause it, so the grading run re-runs that notebook once, alone; a cell that sat idle past
  the limit (it sleeps or blocks) is reported as :data:`IDLE_LIMIT` and not re-run -- an idle
  cell is no faster on an idle machine;
- a uid of its own on the machine (:func:`claim_uid`), however many graders run at once.

:class:`SandboxedExecute` is nbgrader's ``Execute`` with this kernel manager, the limits,
and a verdict for the cells a dead or killed kernel never ran; the configuration in
``nbgrader_config.py`` makes ``nbgrader autograde`` use it as well.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbformat.v4 import new_output
from traitlets import Bool, Integer, List, Unicode, default

from nbgrader.preprocessors import Execute

UID_BASE = 61000                      #: sandbox uids are UID_BASE + n, n < UID_COUNT, one per grading process
UID_COUNT = 1000
LIMIT_NOTICE = "LimitExceeded"
WALL_LIMIT = "wall-clock limit"       #: in the reason of a stop by wall time (a loaded machine can cause it)
CPU_LIMIT = "of CPU time"             #: in the reason of a stop by the kernel's own CPU use
IDLE_LIMIT = "time limit while idle"  #: in the reason of a stop of a cell that neither computed nor was served
BUSY_CPU_FRACTION = 0.1               #: CPU seconds per wall second above which a timed-out cell was computing

_claimed: dict[int, object] = {}


def claim_uid() -> int:
    """A sandbox uid no other grading process on this machine holds, kept for this process's life.

    Each uid is a lock file (``fcntl.flock``) in ``$TMPDIR/leaklab-uids``; the kernel drops the
    lock when the process exits, however it exits, so parallel graders (Dask workers) never
    share a uid -- and with it the process limit or the files of another student's kernel.

    Raises:
        RuntimeError: all :data:`UID_COUNT` uids are held.
    """
    import fcntl

    pid = os.getpid()
    if pid in _claimed:
        return _claimed[pid][0]
    folder = Path(tempfile.gettempdir()) / "leaklab-uids"
    folder.mkdir(mode=0o700, exist_ok=True)
    start = pid % UID_COUNT
    for n in [(start + i) % UID_COUNT for i in range(UID_COUNT)]:
        f = open(folder / f"{UID_BASE + n}.lock", "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _claimed.clear()                                   # a forked child does not inherit its parent's claim
        _claimed[pid] = (UID_BASE + n, f)
        return UID_BASE + n
    raise RuntimeError(f"all {UID_COUNT} sandbox uids from {UID_BASE} are held by other grading processes")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here; the message says what to do."""


def check_bwrap() -> str:
    """Path of a working ``bwrap``.

    Raises:
        SandboxUnavailable: not installed, or it cannot create the namespaces (e.g. inside a
            container that forbids them); the message names the fix.
    """
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed, so student code cannot be sandboxed. "
                                 "Install it (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: "
                                 "`sudo dnf install bubblewrap`), or pass --unsafe-no-sandbox for a trusted local run.")
    probe = subprocess.run([path, "--unshare-pid", "--unshare-net", "--ro-bind", "/", "/", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise SandboxUnavailable(f"bwrap cannot create namespaces here ({probe.stderr.strip()[:200]}); run the grader "
                                 "as root or enable unprivileged user namespaces, or pass --unsafe-no-sandbox "
                                 "for a trusted local run.")
    return path


def _system_ro_paths() -> list[str]:
    """What any Python kernel needs to read: the interpreter, the venv, the library, /usr."""
    import leaklab

    paths = {sys.prefix, sys.base_prefix, os.path.realpath(sys.executable),
             str(Path(leaklab.__file__).resolve().parent)}
    for extra in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/ssl",
                  "/etc/ca-certificates", "/etc/alternatives", "/etc/fonts", "/etc/mime.types"):
        if os.path.exists(extra):
            paths.add(extra)
    return sorted(paths)


def _mount_points(paths: list[str]) -> list[str]:
    """``--dir`` arguments (mode 0755) for every ancestor of ``paths`` that no bind provides
    (bwrap would otherwise create them 0700, out of the unprivileged uid's reach)."""
    fixed = {"/", "/usr", "/proc", "/dev", "/tmp"}
    covered = lambda d: any(d == p or d.startswith(p.rstrip("/") + "/") for p in paths + ["/usr", "/proc", "/dev"])
    dirs = set()
    for p in paths:
        for parent in Path(p).parents:
            d = str(parent)
            if d not in fixed and not covered(d):
                dirs.add(d)
    args = []
    for d in sorted(dirs, key=lambda d: d.count("/")):
        args += ["--perms", "0755", "--dir", d]
    return args


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel inside bubblewrap, speaking over ipc sockets.

    Set :attr:`scratch` (the sandbox's only writable folder) before starting the kernel.
    """

    scratch = Unicode("", help="the kernel's scratch folder (created and owned by the sandbox uid)").tag(config=True)
    sandbox = Bool(True, help="False runs the kernel unsandboxed (--unsafe-no-sandbox)").tag(config=True)
    ro_paths = List(Unicode(), help="extra folders the kernel may read (data)").tag(config=True)
    rw_paths = List(Unicode(), help="extra folders the kernel may write (only for the reference run)").tag(config=True)
    kernel_env = List(Unicode(), help="NAME=VALUE pairs of the kernel's environment").tag(config=True)
    memory_bytes = Integer(8 * 2**30, help="address-space limit (bytes)").tag(config=True)
    cpu_seconds = Integer(3600, help="CPU-time limit of the kernel (seconds)").tag(config=True)
    processes = Integer(512, help="process/thread limit of the sandbox uid").tag(config=True)
    open_files = Integer(1024, help="open-file limit").tag(config=True)
    file_bytes = Integer(2**30, help="largest file the kernel may write (bytes)").tag(config=True)
    uid = Integer(help="uid of the sandboxed kernel (default: claim_uid(), unique on this machine)").tag(config=True)
    extra_env: dict = {}                      #: set per kernel by SandboxedExecute (the oracle's address)

    @default("uid")
    def _default_uid(self):
        return claim_uid()

    @default("kernel_env")
    def _default_env(self):
        from .reference import kernel_env

        return kernel_env()

    @default("ro_paths")
    def _default_ro(self):
        from .reference import data_dir, lm_cache

        return [str(p) for p in (data_dir(), lm_cache()) if p is not None and p.is_dir()]

    def _layout(self) -> dict[str, Path]:
        root = Path(self.scratch)
        return {k: root / k for k in ("home", "work", "tmp", "observations", "ipc")}

    def _env(self) -> dict[str, str]:
        dirs = self._layout()
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(dirs["home"]),
               "TMPDIR": str(dirs["tmp"]), "USER": "student", "LOGNAME": "student", "LANG": "C.UTF-8",
               "PYTHONNOUSERSITE": "1", "MPLCONFIGDIR": str(dirs["home"] / ".matplotlib"),
               "LEAKLAB_OBSERVATIONS": str(dirs["observations"])}
        env.update(dict(kv.split("=", 1) for kv in self.kernel_env))
        env.update(self.extra_env)
        return env

    def _wrap(self, cmd: list[str]) -> list[str]:
        limits = ["prlimit", f"--as={self.memory_bytes}", f"--cpu={self.cpu_seconds}", f"--nproc={self.processes}",
                  f"--nofile={self.open_files}", f"--fsize={self.file_bytes}", "--core=0", "--"]
        if not self.sandbox:
            return limits + cmd
        b = [check_bwrap(), "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net",
             "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
             "--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev", "--perms", "0755", "--dir", "/tmp"]
        for link in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{link}"):
                b += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
            elif os.path.isdir(f"/{link}"):
                b += ["--ro-bind", f"/{link}", f"/{link}"]
        binds = [("--ro-bind", p) for p in _system_ro_paths() + list(self.ro_paths)]
        binds += [("--bind", p) for p in [self.scratch] + list(self.rw_paths)]
        b += _mount_points([p for _, p in binds])
        for flag, p in sorted(binds, key=lambda fp: fp[1].count("/")):
            b += [flag, p, p]
        b += ["--chdir", str(self._layout()["work"]), "--clearenv"]
        for k, v in self._env().items():
            b += ["--setenv", k, v]
        drop = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--no-new-privs", "--"]
        return b + drop + limits + cmd

    async def _async_pre_start_kernel(self, **kw):
        if not self.scratch:
            raise RuntimeError("SandboxKernelManager.scratch must be set before the kernel starts")
        dirs = self._layout()
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self.transport = "ipc"
        self.ip = str(dirs["ipc"] / "kernel")
        self.connection_file = str(dirs["ipc"] / "connection.json")
        self.kernel_spec.interrupt_mode = "message"            # signals do not cross the PID namespace
        kw["cwd"] = str(dirs["work"])
        kw["env"] = self._env()
        log = open(Path(self.scratch) / "kernel.log", "ab")      # the kernel's own fd 1/2, capped by --fsize
        kw["stdout"] = kw["stderr"] = log
        kw["stdin"] = subprocess.DEVNULL
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        if self.sandbox:
            for path in [Path(self.scratch), *Path(self.scratch).rglob("*")]:
                os.chown(path, self.uid, self.uid)
        return self._wrap(cmd), kw


class SandboxLimit(Exception):
    """A limit of the sandbox stopped the kernel; the message says which."""


class SandboxedExecute(Execute):
    """nbgrader's Execute with the kernel in :class:`SandboxKernelManager`.

    Adds the total-output limit and the per-notebook wall-time limit, kills the kernel (the
    whole PID namespace) at a cell's time limit instead of interrupting it, and when a limit
    or a crash ends the kernel early it gives every cell that did not run an error output
    saying why -- so that student is graded on the cells that ran and everyone else goes on.
    The observation folder is handed on in ``resources["leaklab"]["observations"]``.

    When the notebook's graded cells declare victims (oracle regions: the instructor's copy
    from the gradebook, or ``resources["leaklab"]["oracle_sections"]`` for the reference
    run), an :class:`autograder.oracle.OracleServer` serves them for the whole run; it is
    handed on in ``resources["leaklab"]["oracle"]`` (the judges read its log) and stopped by
    :class:`autograder.judge.RemoveScratch`.
    """

    sandbox = Bool(True, help="run the kernel in bubblewrap (False: --unsafe-no-sandbox)").tag(config=True)
    scratch_root = Unicode("", help="where scratch folders are made (default: the system temp dir)").tag(config=True)
    notebook_timeout = Integer(3600, help="wall-time limit of a whole notebook (seconds)").tag(config=True)
    cell_cpu_seconds = Integer(0, help="CPU time one cell may use, all the kernel's processes and threads "
                                       "together (seconds; 0: no CPU limit)").tag(config=True)
    max_output_bytes = Integer(64 * 2**20, help="total output a notebook may send (bytes)").tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(*args, **kwargs)

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        km.scratch = self._scratch
        km.sandbox = self.sandbox
        km.extra_env = {"LEAKLAB_ORACLE": self._oracle.address} if self._oracle is not None else {}
        return km

    def _stop(self, why: str) -> None:
        if self._limit is None:
            self._limit = why
        km = getattr(self, "km", None)
        proc = getattr(getattr(km, "provisioner", None), "process", None)
        if proc is not None and proc.poll() is None:
            proc.kill()                                        # bwrap dies -> the PID namespace dies

    def output(self, outs, msg, display_id, cell_index):
        self._output_bytes += len(json.dumps(msg.get("content", {}), default=str))
        if self._output_bytes > self.max_output_bytes:
            self._stop(f"the notebook printed more than {self.max_output_bytes // 2**20} MiB of output")
            return None
        return super().output(outs, msg, display_id, cell_index)

    async def _async_handle_timeout(self, timeout, cell=None):
        used = self._kernel_cpu(oracle=True) - self._cell_cpu
        if used >= BUSY_CPU_FRACTION * timeout:
            self._stop(f"a cell ran past its {timeout} s {WALL_LIMIT}")
        else:
            self._stop(f"a cell ran past its {timeout} s {IDLE_LIMIT} (it used {used:.0f} s of CPU: "
                       "it sleeps, waits for input or is blocked)")
        raise SandboxLimit(self._limit)

    def _kernel_cpu(self, oracle: bool = False) -> float:
        """CPU seconds used so far by every process of the sandbox (reaped children included),
        and with ``oracle`` by the oracle process serving its victims."""
        import psutil

        proc = getattr(getattr(getattr(self, "km", None), "provisioner", None), "process", None)
        if proc is None:
            return 0.0
        total = 0.0
        try:
            root = psutil.Process(proc.pid)
            tree = [root] + root.children(recursive=True)
        except psutil.Error:
            return 0.0
        served = getattr(getattr(self, "_oracle", None), "_proc", None)
        if oracle and served is not None and served.pid is not None:
            try:
                tree.append(psutil.Process(served.pid))
            except psutil.Error:
                pass
        for p in tree:
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
        return total

    def _watch_cpu(self, stop: threading.Event) -> None:
        start = self._kernel_cpu()
        while not stop.wait(0.5):
            if self._kernel_cpu() - start > self.cell_cpu_seconds:
                self._stop(f"a cell used more than its {self.cell_cpu_seconds} s {CPU_LIMIT}")
                return

    def preprocess(self, nb, resources, km=None):
        check_bwrap() if self.sandbox else None
        base = self.scratch_root or None
        self._scratch = tempfile.mkdtemp(prefix="leaklab-sandbox-", dir=base)
        os.chmod(self._scratch, 0o700)
        self._limit, self._output_bytes, self._done, self._cell_cpu = None, 0, set(), 0.0
        resources.setdefault("leaklab", {})["observations"] = str(Path(self._scratch) / "observations")
        resources["leaklab"]["scratch"] = self._scratch
        self._oracle = self._start_oracle(resources)
        timer = threading.Timer(self.notebook_timeout,
                                lambda: self._stop(f"the notebook ran past its {self.notebook_timeout} s {WALL_LIMIT}"))
        timer.daemon = True
        timer.start()
        started = time.monotonic()
        try:
            nb, resources = super().preprocess(nb, resources, km=km)
        except Exception as err:                                # DeadKernelError, SandboxLimit, CellTimeoutError ...
            why = self._limit or f"the kernel stopped ({type(err).__name__}: {str(err)[:200]})"
            self._mark_not_run(nb, why)
            resources["leaklab"]["stopped"] = why
        finally:
            timer.cancel()
            resources["leaklab"]["seconds"] = time.monotonic() - started
        return nb, resources

    def _start_oracle(self, resources):
        from .judge import gradebook_sources, oracle_code
        from .oracle import OracleServer

        sections = resources["leaklab"].get("oracle_sections")
        if sections is None:
            sections = {gid: oracle_code(src) for gid, src in gradebook_sources(resources).items()}
        sections = {gid: code for gid, code in sections.items() if code}
        if not sections:
            return None
        server = OracleServer(sections, Path(self._scratch) / "ipc" / "oracle")
        server.start()
        resources["leaklab"]["oracle"] = server
        return server

    def preprocess_cell(self, cell, resources, index):
        if self._oracle is not None:
            self._oracle.cell = cell.metadata.get("nbgrader", {}).get("grade_id")
        stop = threading.Event()
        self._cell_cpu = self._kernel_cpu(oracle=True) if cell.cell_type == "code" else 0.0
        if self.cell_cpu_seconds > 0 and cell.cell_type == "code":
            threading.Thread(target=self._watch_cpu, args=(stop,), daemon=True).start()
        try:
            result = super().preprocess_cell(cell, resources, index)
        finally:
            stop.set()
            if self._oracle is not None:
                self._oracle.cell = None
        self._done.add(index)
        return result

    def _mark_not_run(self, nb, why: str) -> None:
        """Every code cell that did not finish (the one running included) gets an error output naming the limit."""
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and i not in self._done:
                cell.outputs = [new_output("error", ename=LIMIT_NOTICE, evalue=why,
                                           traceback=[f"{LIMIT_NOTICE}: not run: {why}"])]
