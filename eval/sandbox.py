"""Run untrusted Python programs (model-written code) with limits enforced from outside.

Each run gets:
- its own session and process group (everything it spawns is SIGKILLed afterwards);
- a fresh temporary working directory, removed afterwards, and a scrubbed environment (HOME/TMPDIR point
  into that directory; nothing of the judge's environment is passed on);
- rlimits on CPU time, address space, file size, open files and processes, set by the harness before the
  program starts (`_sandbox_harness.py`), plus no core dumps and `no_new_privs` (setuid binaries gain nothing);
- a wall-clock limit enforced by the judge: the clock starts when the harness reports it is about to run the
  program (interpreter startup is not charged) and the process group is killed when it runs out;
- a cap on captured stdout (a program printing gigabytes is stopped at the cap) and stderr (the rest is
  drained and dropped), so the judge's memory stays bounded.

When the judge runs as root (containers, the usual GPU box) every run also switches to a dedicated unused
uid (one per parallel slot, `uid_base + slot`). That is what makes the limits bite: RLIMIT_NPROC is not
enforced for root and counts per user, so a per-slot uid bounds a fork bomb to `processes` tasks without
touching the judge or other slots. As that uid the program cannot write or delete the judge's files, signal
or ptrace the judge, or read `/proc/<judge>/environ`; after the run every process of that uid is killed
(also those that called setsid() to leave the group) and the files it left in /tmp, /var/tmp and /dev/shm
are removed. If the interpreter is not readable by other users (e.g. a Python under /root), the harness
keeps only CAP_DAC_READ_SEARCH: the program can then read (never write) files it otherwise could not.

What it does not stop (it is not a VM): reading world-readable files (and, with CAP_DAC_READ_SEARCH, any
file); network access; writing into other world-writable directories; using up disk with many small files
(FSIZE bounds each file, not their number); CPU and memory pressure on the host within the limits; kernel
exploits. As a non-root user there is no uid switch: RLIMIT_NPROC is then set to the user's current task
count plus `processes` (the bound is shared with the user's other processes), the program can touch
everything the user can, and a process that leaves the process group with setsid() survives the cleanup.

Stronger isolation plugs in as a command prefix, through `Sandbox(command_prefix=[...])` or the
environment variable FALCON_H1R_SANDBOX_PREFIX (a shell-quoted string); `{cwd}` is replaced by the run's
directory. Examples:
    bwrap --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --bind {cwd} {cwd} --chdir {cwd}
          --unshare-all --die-with-parent --
    nsjail -Mo --chroot / --rw -D {cwd} --disable_clone_newuser --
    unshare --pid --net --fork --kill-child --mount-proc
The harness still applies the rlimits and the uid switch inside the prefix's namespaces.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import queue
import secrets
import selectors
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HARNESS = Path(__file__).resolve().with_name("_sandbox_harness.py")
PREFIX_ENV = "FALCON_H1R_SANDBOX_PREFIX"
UID_BASE_ENV = "FALCON_H1R_SANDBOX_UID_BASE"
_SHARED_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
_MAX_SLOTS = 256

STATUSES = ("ok", "timeout", "runtime_error", "compile_error", "output_limit")


class SandboxError(RuntimeError):
    """The sandbox itself failed (misconfiguration or a broken host), not the program under test."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits. Memory is address space (RLIMIT_AS), so it counts reserved, not only used, memory."""

    memory_mb: int = 4096
    file_size_mb: int = 64
    open_files: int = 64
    processes: int = 64
    max_output_mb: float = 64.0
    max_stderr_kb: int = 64
    startup_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in ("memory_mb", "file_size_mb", "open_files", "processes", "max_output_mb", "startup_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxLimits.{name} must be > 0, got {getattr(self, name)}")
        if self.memory_mb < 256:
            raise ValueError(
                f"SandboxLimits.memory_mb={self.memory_mb} is too small for a Python interpreter; use >= 256"
            )


@dataclass
class RunResult:
    """Outcome of one run. `status`: ok | timeout | runtime_error | compile_error | output_limit."""

    status: str
    stdout: bytes
    stderr: bytes
    returncode: int | None
    wall_time: float
    detail: str = ""
    value: object = None  # functional mode: the returned value, rebuilt with its types
    has_value: bool = False


@dataclass
class _Slot:
    index: int
    uid: int | None
    gid: int | None
    keep_read_caps: bool
    nproc: int


# ----------------------------------------------------------------------------- process bookkeeping
def _proc_status(pid: str) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as fh:
            return dict(line.split(":\t", 1) for line in fh.read().splitlines() if ":\t" in line)
    except OSError:
        return {}


def _live_pids_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _proc_status(entry)
        uids = st.get("Uid", "").split()
        if uids and int(uids[0]) == uid and not st.get("State", "").startswith(("Z", "X")):
            pids.append(int(entry))
    return pids


def _kill_uid(uid: int) -> None:
    """SIGKILL every live process whose real uid is `uid` (sandbox uids only), until none is left."""
    for _ in range(200):
        pids = _live_pids_of_uid(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)


def _user_task_count(uid: int) -> int:
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_status(entry)
            uids = st.get("Uid", "").split()
            if uids and int(uids[0]) == uid:
                total += int(st.get("Threads", "1").strip() or 1)
    return total


def _remove_tree(path: str) -> None:
    def fix_and_retry(func, p, _exc):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p) or p, stat.S_IRWXU)
            os.chmod(p, stat.S_IRWXU)
            func(p)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=fix_and_retry)
    else:
        shutil.rmtree(path, onerror=fix_and_retry)


def _remove_files_of_uid(uid: int) -> None:
    for base in _SHARED_TMP_DIRS:
        try:
            entries = list(os.scandir(base))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if st.st_uid != uid:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    _remove_tree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


def _site_packages() -> list[str]:
    import site

    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    return [d for d in dirs if os.path.isdir(d)]


_READ_CAPS_CACHE: dict[tuple[str, int], bool] = {}


def _interpreter_needs_read_caps(python: str, uid: int) -> bool:
    """Whether `uid` cannot run the interpreter on its own (e.g. a Python installed under /root)."""
    key = (python, uid)
    if key not in _READ_CAPS_CACHE:
        try:
            proc = subprocess.run(
                [python, "-I", "-B", "-c", "import json, resource"],
                user=uid,
                group=uid,
                extra_groups=[],
                cwd="/",
                env={"PATH": "/usr/bin:/bin"},
                capture_output=True,
                timeout=120,
            )
            _READ_CAPS_CACHE[key] = proc.returncode != 0
        except PermissionError:
            _READ_CAPS_CACHE[key] = True
    return _READ_CAPS_CACHE[key]


class _SlotPool:
    """Process-wide parallel slots; as root each slot owns one uid, so cleanup by uid never hits a neighbour."""

    def __init__(self) -> None:
        self._free: queue.Queue[int] = queue.Queue()
        for i in range(_MAX_SLOTS):
            self._free.put(i)

    def take(self) -> int:
        return self._free.get()

    def give(self, index: int) -> None:
        self._free.put(index)


_SLOTS = _SlotPool()
_BASE_DIR_LOCK = threading.Lock()
_BASE_DIR: str | None = None


def _base_dir() -> str:
    """A root-owned 0711 parent for the run directories: a program cannot create files next to its own dir."""
    global _BASE_DIR
    with _BASE_DIR_LOCK:
        if _BASE_DIR is None or not os.path.isdir(_BASE_DIR):
            _BASE_DIR = tempfile.mkdtemp(prefix="falcon_h1r_sandbox_")
            os.chmod(_BASE_DIR, 0o711)
            atexit.register(_remove_tree, _BASE_DIR)
        return _BASE_DIR


def default_uid_base() -> int:
    """First sandbox uid of this process: unused by real accounts and distinct between processes."""
    if os.environ.get(UID_BASE_ENV):
        return int(os.environ[UID_BASE_ENV])
    return 970_000 + (os.getpid() % 4096) * _MAX_SLOTS


# ----------------------------------------------------------------------------- the sandbox
class Sandbox:
    """Runs programs through `_sandbox_harness.py` under the limits above. Thread-safe; `run` may be
    called from many threads at once (each call holds one slot)."""

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        command_prefix: list[str] | None = None,
        drop_privileges: bool | None = None,
        uid_base: int | None = None,
        python: str | None = None,
    ) -> None:
        self.limits = limits or SandboxLimits()
        if command_prefix is None and os.environ.get(PREFIX_ENV):
            command_prefix = shlex.split(os.environ[PREFIX_ENV])
        self.command_prefix = list(command_prefix or [])
        is_root = os.geteuid() == 0
        self.drop_privileges = is_root if drop_privileges is None else drop_privileges
        if self.drop_privileges and not is_root:
            raise SandboxError("drop_privileges=True needs the judge to run as root; pass drop_privileges=None")
        self.uid_base = default_uid_base() if uid_base is None else uid_base
        self.python = python or sys.executable
        if not self.python:
            raise SandboxError("cannot find the Python interpreter (sys.executable is empty); pass python=...")

    @contextlib.contextmanager
    def slot(self) -> Iterator[_Slot]:
        """Hold one parallel slot (and, as root, its uid) for a sequence of runs."""
        index = _SLOTS.take()
        try:
            if self.drop_privileges:
                uid = self.uid_base + index
                caps = _interpreter_needs_read_caps(self.python, uid)
                slot = _Slot(index, uid, uid, caps, self.limits.processes)
            else:
                nproc = _user_task_count(os.getuid()) + self.limits.processes
                slot = _Slot(index, None, None, False, nproc)
            yield slot
        finally:
            if self.drop_privileges:
                _kill_uid(self.uid_base + index)
            _SLOTS.give(index)

    def run(
        self,
        code: str,
        *,
        stdin: str | bytes = b"",
        mode: str = "stdin",
        func_name: str | None = None,
        timeout: float = 6.0,
        max_output_bytes: int | None = None,
        slot: _Slot | None = None,
    ) -> RunResult:
        """Run `code` once. mode "stdin": feed `stdin`, capture stdout. mode "functional": call `func_name`
        with the json-decoded lines of `stdin` as positional arguments; stdout then holds
        `<nonce><tagged JSON result>`, rebuilt into `RunResult.value`."""
        if mode not in ("stdin", "functional"):
            raise ValueError(f"mode must be 'stdin' or 'functional', got {mode!r}")
        if mode == "functional" and not func_name:
            raise ValueError("mode='functional' needs func_name")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if slot is None:
            with self.slot() as own:
                return self.run(
                    code,
                    stdin=stdin,
                    mode=mode,
                    func_name=func_name,
                    timeout=timeout,
                    max_output_bytes=max_output_bytes,
                    slot=own,
                )
        data = stdin.encode("utf-8") if isinstance(stdin, str) else bytes(stdin)
        cap = int(max_output_bytes or self.limits.max_output_mb * 2**20)
        cwd = tempfile.mkdtemp(prefix="run_", dir=_base_dir() if slot.uid is not None else None)
        try:
            Path(cwd, "solution.py").write_text(code, encoding="utf-8", errors="surrogatepass")
            if slot.uid is not None:
                os.chown(cwd, slot.uid, slot.gid)
                os.chmod(cwd, 0o700)
            return self._spawn(slot, cwd, data, mode, func_name, float(timeout), cap)
        finally:
            if slot.uid is not None:
                _kill_uid(slot.uid)
                _remove_files_of_uid(slot.uid)
            _remove_tree(cwd)

    # ------------------------------------------------------------------------- internals
    def _rlimits(self, timeout: float, slot: _Slot) -> dict:
        lim = self.limits
        cpu = math.ceil(timeout) + 2  # interpreter startup is charged to the process's CPU time
        return {
            "RLIMIT_CPU": [cpu, cpu + 1],
            "RLIMIT_AS": lim.memory_mb * 2**20,
            "RLIMIT_FSIZE": lim.file_size_mb * 2**20,
            "RLIMIT_NOFILE": lim.open_files,
            "RLIMIT_NPROC": slot.nproc,
            "RLIMIT_CORE": 0,
        }

    def _env(self, cwd: str) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": cwd,
            "TMPDIR": cwd,
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }

    def _spawn(
        self, slot: _Slot, cwd: str, data: bytes, mode: str, func_name: str | None, timeout: float, cap: int
    ) -> RunResult:
        nonce = "\x1e" + secrets.token_hex(16) + "\x1e"
        ctl_r, ctl_w = os.pipe()
        cfg = {
            "ctl_fd": ctl_w,
            "mode": mode,
            "func_name": func_name,
            "nonce": nonce,
            "uid": slot.uid,
            "gid": slot.gid,
            "keep_read_caps": slot.keep_read_caps,
            "rlimits": self._rlimits(timeout, slot),
            "site_packages": _site_packages(),
        }
        # -S skips site's .pth processing (~70 ms per run with editable installs); the harness puts the
        # site-packages directories back on sys.path so programs can still import numpy & co.
        argv = [self.python, "-I", "-S", "-B", str(HARNESS), json.dumps(cfg)]
        prefix = [part.replace("{cwd}", cwd) for part in self.command_prefix]
        try:
            proc = subprocess.Popen(
                prefix + argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=self._env(cwd),
                start_new_session=True,
                pass_fds=(ctl_w,),
                close_fds=True,
            )
        except OSError as exc:
            os.close(ctl_r)
            raise SandboxError(f"could not start the sandboxed interpreter {prefix + argv[:1]}: {exc}") from exc
        finally:
            os.close(ctl_w)
        try:
            watch = _Watch(proc, ctl_r, data, timeout, self.limits, cap)
            watch.loop()
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            os.close(ctl_r)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                with contextlib.suppress(OSError):
                    stream.close()
        returncode, cpu_used = _reap(proc)
        result = watch.result(returncode, cpu_used, self._rlimits(timeout, slot)["RLIMIT_CPU"][0])
        if mode == "functional" and result.status == "ok":
            result.has_value, result.value = decode_result(result.stdout, nonce)
        return result


def _reap(proc: subprocess.Popen) -> tuple[int, float]:
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        return (proc.returncode if proc.returncode is not None else -1), 0.0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


class _Watch:
    """Feeds stdin, drains stdout/stderr and the control pipe, and enforces the deadlines."""

    def __init__(
        self, proc: subprocess.Popen, ctl: int, data: bytes, timeout: float, limits: SandboxLimits, cap: int
    ) -> None:
        self.proc, self.ctl, self.timeout, self.limits, self.cap = proc, ctl, timeout, limits, cap
        self.pending = memoryview(data)
        self.out, self.err = bytearray(), bytearray()
        self.ctl_msg = b""
        self.started = time.monotonic()
        self.ready_at: float | None = None
        self.exited_at: float | None = None
        self.deadline = self.started + limits.startup_timeout
        self.timed_out = self.output_over = False

    def loop(self) -> None:
        proc = self.proc
        sel = selectors.DefaultSelector()
        for fd in (proc.stdin.fileno(), proc.stdout.fileno(), proc.stderr.fileno(), self.ctl):
            os.set_blocking(fd, False)
        if self.pending:
            sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE, "in")
        else:
            proc.stdin.close()
        sel.register(proc.stdout.fileno(), selectors.EVENT_READ, "out")
        sel.register(proc.stderr.fileno(), selectors.EVENT_READ, "err")
        sel.register(self.ctl, selectors.EVENT_READ, "ctl")
        pidfd = None
        with contextlib.suppress(AttributeError, OSError):
            pidfd = os.pidfd_open(proc.pid)
            sel.register(pidfd, selectors.EVENT_READ, "exit")
        try:
            self._select_until_done(sel, pidfd is not None)
        finally:
            sel.close()
            if pidfd is not None:
                os.close(pidfd)

    def _select_until_done(self, sel: selectors.BaseSelector, has_pidfd: bool) -> None:
        drain_until = None
        while True:
            now = time.monotonic()
            if self.exited_at is not None:
                streams_open = any(k.data in ("out", "err") for k in sel.get_map().values())
                if not streams_open or now >= drain_until:
                    return
            elif now >= self.deadline:
                self.timed_out = True
                return
            wait = (drain_until if self.exited_at is not None else self.deadline) - now
            events = sel.select(min(wait, 0.05) if not has_pidfd else wait)
            for key, _ in events:
                if not self._handle(sel, key):
                    return
            if self.exited_at is None and (not has_pidfd) and self.proc.poll() is not None:
                self.exited_at = time.monotonic()
            if self.exited_at is not None and drain_until is None:
                drain_until = self.exited_at + 0.5  # a leftover grandchild may hold the pipes open

    def _handle(self, sel: selectors.BaseSelector, key: selectors.SelectorKey) -> bool:
        tag, fd = key.data, key.fd
        if tag == "exit":
            sel.unregister(fd)
            self.exited_at = time.monotonic()
        elif tag == "in":
            try:
                written = os.write(fd, self.pending[: 1 << 16])
                self.pending = self.pending[written:]
            except BlockingIOError:
                return True
            except (BrokenPipeError, OSError):
                self.pending = memoryview(b"")
            if not self.pending:
                sel.unregister(fd)
                self.proc.stdin.close()
        elif tag == "ctl":
            chunk = self._read(fd)
            if chunk is None:
                return True
            if not chunk:
                sel.unregister(fd)
            else:
                self.ctl_msg += chunk
                if self.ready_at is None and self.ctl_msg.startswith(b"R"):
                    self.ready_at = time.monotonic()
                    self.deadline = self.ready_at + self.timeout
        else:
            chunk = self._read(fd)
            if chunk is None:
                return True
            if not chunk:
                sel.unregister(fd)
            elif tag == "out":
                if len(self.out) + len(chunk) > self.cap:
                    self.output_over = True
                    return False  # stop now: the process group is killed by the caller
                self.out += chunk
            else:
                room = self.limits.max_stderr_kb * 1024 - len(self.err)
                if room > 0:
                    self.err += chunk[:room]
        return True

    @staticmethod
    def _read(fd: int) -> bytes | None:
        try:
            return os.read(fd, 1 << 16)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def result(self, returncode: int, cpu_used: float, cpu_limit: int) -> RunResult:
        end = self.exited_at or time.monotonic()
        wall = end - self.ready_at if self.ready_at is not None else 0.0
        out, err = bytes(self.out), bytes(self.err)
        tag, msg = self.ctl_msg[:1], self.ctl_msg[1:].decode("utf-8", "replace")
        if tag == b"E":
            raise SandboxError(f"sandbox setup failed: {msg}")
        if tag == b"C":
            return RunResult("compile_error", out, err, returncode, 0.0, msg)
        if self.ready_at is None:
            if self.timed_out:
                raise SandboxError(
                    f"the sandboxed interpreter did not start within {self.limits.startup_timeout:.0f} s "
                    "(host overloaded?); raise SandboxLimits.startup_timeout"
                )
            tail = err.decode("utf-8", "replace")[-2000:]
            raise SandboxError(
                f"the sandboxed interpreter exited before running the program (exit code {returncode}); "
                f"stderr: {tail!r}. If it ran out of memory, raise SandboxLimits.memory_mb."
            )
        if self.output_over:
            return RunResult("output_limit", out, err, returncode, wall, f"stdout exceeded {self.cap} bytes")
        if self.timed_out:
            return RunResult("timeout", out, err, returncode, wall, f"wall clock exceeded {self.timeout:g} s")
        killed_by = -returncode if returncode < 0 else None
        if killed_by == signal.SIGXCPU or (killed_by == signal.SIGKILL and cpu_used >= cpu_limit - 0.5):
            return RunResult("timeout", out, err, returncode, wall, f"CPU time limit ({cpu_limit} s) exceeded")
        if returncode == 0:
            return RunResult("ok", out, err, returncode, wall)
        why = f"killed by signal {signal.Signals(killed_by).name}" if killed_by else f"exit code {returncode}"
        return RunResult("runtime_error", out, err, returncode, wall, why)


# ----------------------------------------------------------------------------- functional results
class _Opaque:
    """A value the judge cannot rebuild (e.g. a numpy array): equal to nothing."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


def _decode(node):
    tag = node[0]
    if tag == "n":
        return None
    if tag == "b":
        return bool(node[1])
    if tag == "i":
        return int(node[1])
    if tag == "f":
        return float(node[1])
    if tag == "s":
        return str(node[1])
    if tag == "l":
        return [_decode(v) for v in node[1]]
    if tag == "t":
        return tuple(_decode(v) for v in node[1])
    if tag == "d":
        return {_decode(k): _decode(v) for k, v in node[1]}
    if tag == "S":
        return {_decode(v) for v in node[1]}
    if tag == "F":
        return frozenset(_decode(v) for v in node[1])
    if tag == "c":
        return complex(float(node[1]), float(node[2]))
    return _Opaque(str(node[1]) if len(node) > 1 else "object")


def decode_result(stdout: bytes, nonce: str) -> tuple[bool, object]:
    """(found, value) of a functional run's result line (`<nonce><tagged JSON>\\n`) in `stdout`."""
    marker = nonce.encode()
    start = stdout.rfind(marker)
    if start < 0:
        return False, None
    line = stdout[start + len(marker) :].split(b"\n", 1)[0]
    try:
        return True, _decode(json.loads(line.decode("utf-8", "surrogatepass")))
    except (ValueError, TypeError, IndexError, KeyError, RecursionError, UnicodeDecodeError):
        return False, None
