"""Runs one program inside the sandbox (started by `falcon_h1r.eval.sandbox`, never imported by it).

Usage: python -I -S -B _sandbox_harness.py '<json config>'   (cwd: a fresh directory holding solution.py)

Trusted only until the program starts. Before that it: applies the rlimits, drops to the sandbox user
(when started as root), forbids privilege gain on exec (no_new_privs), runs the LiveCodeBench prelude,
compiles the program, and reports on the control pipe: b"R" ready, b"C<msg>" compile error, b"E<msg>"
setup error. The parent starts the per-test clock at b"R" and enforces it from outside. The control pipe
is closed before the program runs, so nothing the program does can fake those reports.

Modes: "stdin": the program runs as `__main__` reading the test input from stdin; its stdout is the answer.
"functional": the program's module is executed, `Solution()` is built when the source defines
`class Solution` (else the module's own function is used), the method is called with one positional
argument per input line (each line json-decoded), and the return value is written after `nonce` on the
original stdout as tagged JSON (types kept exact: tuple vs list, int keys, sets).
SystemExit from the program counts as a normal end (as in the official LiveCodeBench runner).
"""

import json
import os
import resource
import sys

# The names the official LiveCodeBench runner makes available to every program before it runs.
PRELUDE_MODULES = (
    "string re datetime collections heapq bisect copy math random statistics itertools functools operator io sys "
    "json builtins typing"
).split()
RECURSION_LIMIT = 50000
STACK_BYTES = 256 * 1024 * 1024  # the program runs in a thread with this stack: deep recursion does not segfault

CAP_DAC_READ_SEARCH = 2
PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS = 8, 38
LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _report(fd: int, tag: bytes, msg: str = "") -> None:
    os.write(fd, tag + msg.encode("utf-8", "replace")[:4000])


def _apply_rlimits(limits: dict) -> None:
    for name, value in limits.items():
        res = getattr(resource, name)
        soft, hard = value if isinstance(value, list) else (value, value)
        resource.setrlimit(res, (soft, hard))


def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _drop_privileges(uid: int, gid: int, keep_read_caps: bool) -> None:
    """Become `uid`; optionally keep only CAP_DAC_READ_SEARCH (when the interpreter is not readable by uid)."""
    ctypes, libc = _libc()
    if keep_read_caps and libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS) failed")
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if keep_read_caps:

        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class Data(ctypes.Structure):
            _fields_ = [
                ("effective", ctypes.c_uint32),
                ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32),
            ]

        data = (Data * 2)()
        data[0].effective = data[0].permitted = 1 << CAP_DAC_READ_SEARCH
        if libc.capset(ctypes.byref(Header(LINUX_CAPABILITY_VERSION_3, 0)), data) != 0:
            raise OSError(ctypes.get_errno(), "capset(CAP_DAC_READ_SEARCH) failed")
        libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
        raise OSError("privilege drop did not take effect")


def _no_new_privs() -> None:
    ctypes, libc = _libc()
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def _prelude_namespace() -> dict:
    import builtins
    import importlib

    ns: dict = {"__name__": "__main__", "__file__": "solution.py", "__builtins__": builtins}
    for name in PRELUDE_MODULES:
        module = importlib.import_module(name)
        ns.update({k: getattr(module, k) for k in getattr(module, "__all__", None) or dir(module) if k[:1] != "_"})
    for name in PRELUDE_MODULES:
        ns[name] = importlib.import_module(name)
    sys.setrecursionlimit(RECURSION_LIMIT)
    return ns


def _encode(value, depth: int = 0):
    """Tagged JSON for a return value, so the judge can rebuild it with its exact types."""
    if depth > 10000:
        raise RecursionError("return value nested too deeply")
    if value is None:
        return ["n"]
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", str(value)]
    if isinstance(value, float):
        return ["f", repr(value)]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, list):
        return ["l", [_encode(v, depth + 1) for v in value]]
    if isinstance(value, tuple):
        return ["t", [_encode(v, depth + 1) for v in value]]
    if isinstance(value, dict):
        return ["d", [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in value.items()]]
    if isinstance(value, (set, frozenset)):
        return ["S" if isinstance(value, set) else "F", [_encode(v, depth + 1) for v in value]]
    if isinstance(value, complex):
        return ["c", repr(value.real), repr(value.imag)]
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _encode(value.item(), depth)  # numpy scalars compare like Python scalars
    return ["o", type(value).__qualname__]  # anything else never equals an expected JSON value


def _run_in_big_stack(fn):
    import threading

    outcome = {}

    def target():
        threading.stack_size(0)  # threads the program starts get the default stack again
        try:
            outcome["value"] = fn()
        except SystemExit:
            outcome["exit"] = True
        except BaseException as exc:  # the program's own error: report it like Python would
            outcome["error"] = exc
            try:
                import traceback

                traceback.print_exception(exc)
            except BaseException:
                pass

    threading.stack_size(STACK_BYTES)
    thread = threading.Thread(target=target, name="solution")
    thread.start()
    thread.join()
    return outcome


def main() -> None:
    cfg = json.loads(sys.argv[1])
    ctl = int(cfg["ctl_fd"])
    sys.path.extend(cfg.get("site_packages", []))
    try:
        _apply_rlimits(cfg["rlimits"])
        if cfg.get("uid") is not None:
            _drop_privileges(int(cfg["uid"]), int(cfg["gid"]), bool(cfg.get("keep_read_caps")))
        _no_new_privs()
        with open("solution.py", encoding="utf-8", errors="replace") as fh:
            source = fh.read()
        ns = _prelude_namespace()
        args = None
        if cfg["mode"] == "functional":
            args = [json.loads(line) for line in sys.stdin.read().split("\n")]
    except BaseException as exc:
        _report(ctl, b"E", f"{type(exc).__name__}: {exc}")
        os._exit(70)
    try:
        code = compile(source, "solution.py", "exec")
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
        _report(ctl, b"C", f"{type(exc).__name__}: {exc}")
        os._exit(0)

    if cfg["mode"] == "stdin":
        _report(ctl, b"R")
        os.close(ctl)
        outcome = _run_in_big_stack(lambda: exec(code, ns))
        try:
            sys.stdout.flush()
        except BaseException:
            pass
        raise SystemExit(1 if "error" in outcome else 0)  # interpreter exit joins the program's own threads

    out_fd = os.dup(1)  # the original stdout carries only the result line
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(devnull, "w", closefd=False)  # the program's prints are discarded
    func_name = cfg["func_name"]
    _report(ctl, b"R")
    os.close(ctl)

    def call():
        exec(code, ns)
        if "class Solution" in source:
            target = ns["Solution"]()
            method = getattr(target, func_name)
        else:
            method = ns[func_name]
        result = method(*args)
        if isinstance(result, tuple):
            result = list(result)  # the official judge accepts a tuple where a list is expected
        return json.dumps(_encode(result))

    outcome = _run_in_big_stack(call)
    if "value" in outcome:
        payload = (cfg["nonce"] + outcome["value"] + "\n").encode("utf-8", "surrogatepass")
        view = memoryview(payload)
        while view:
            view = view[os.write(out_fd, view) :]
    raise SystemExit(0 if "value" in outcome else 1)


if __name__ == "__main__":
    main()
