"""Red-team suite for the code judge's sandbox: hostile programs must fail cleanly and harm nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from falcon_h1r.eval.livecodebench import grade
from falcon_h1r.eval.sandbox import Sandbox, SandboxLimits, _live_pids_of_uid

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="the uid switch (and what it blocks) needs a root judge")


@pytest.fixture(scope="module")
def sandbox():
    return Sandbox(SandboxLimits(memory_mb=1024, processes=32))


def run(sandbox, code, timeout=2.0, **kw):
    start = time.monotonic()
    result = sandbox.run(code, timeout=timeout, **kw)
    return result, time.monotonic() - start


def test_infinite_loop_and_sleep_time_out(sandbox):
    for code in ("while True:\n    pass", "import time\ntime.sleep(3600)"):
        result, elapsed = run(sandbox, code, timeout=1.0)
        assert result.status == "timeout"
        assert elapsed < 10


def test_huge_allocation_is_a_runtime_error(sandbox):
    result, _ = run(sandbox, "x = bytearray(100 * 2**30)\nprint('allocated')")
    assert result.status == "runtime_error"
    assert b"MemoryError" in result.stderr and b"allocated" not in result.stdout


def test_fork_bomb_is_contained_and_cleaned_up(sandbox):
    code = (
        "import os, time\n"
        "n = 0\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            os.setsid()\n"  # try to leave the process group so a group kill misses it
        "            time.sleep(3600)\n"
        "        n += 1\n"
        "    except OSError:\n"
        "        print(n, flush=True)\n"
        "        time.sleep(3600)\n"
    )
    with sandbox.slot() as slot:
        result = sandbox.run(code, timeout=2.0, slot=slot)
        assert result.status == "timeout"
        if IS_ROOT:
            forked = int(result.stdout.split()[0])
            assert forked < 32  # RLIMIT_NPROC of the per-slot uid
            assert _live_pids_of_uid(slot.uid) == []  # the setsid() escapees were killed too
    assert sandbox.run("print('still fine')").stdout == b"still fine\n"


def test_printing_gigabytes_is_cut_at_the_cap(sandbox):
    code = "import sys\nchunk = 'x' * 2**20\nwhile True:\n    sys.stdout.write(chunk)"
    result, elapsed = run(sandbox, code, timeout=20.0, max_output_bytes=8 * 2**20)
    assert result.status == "output_limit"
    assert len(result.stdout) <= 8 * 2**20
    assert elapsed < 20


def test_file_size_and_open_files_limits(sandbox):
    big = "with open('big', 'wb') as f:\n    while True:\n        f.write(b'x' * 2**20)"
    result, _ = run(sandbox, big, timeout=10.0)
    assert result.status == "runtime_error" and b"File too large" in result.stderr
    fds = "fs = [open(f'f{i}', 'w') for i in range(10000)]"
    result, _ = run(sandbox, fds)
    assert result.status == "runtime_error" and b"Too many open files" in result.stderr


def test_parent_environment_is_not_visible(sandbox, monkeypatch):
    secret = "s3cr3t-" + uuid.uuid4().hex
    monkeypatch.setenv("FALCON_H1R_TEST_SECRET", secret)
    code = (
        "import os\n"
        "print(sorted(os.environ))\n"
        "print(os.environ.get('FALCON_H1R_TEST_SECRET'))\n"
        "try:\n"
        "    print(open(f'/proc/{os.getppid()}/environ', 'rb').read())\n"
        "except OSError as e:\n"
        "    print('denied', type(e).__name__)\n"
    )
    result, _ = run(sandbox, code)
    assert result.status == "ok"
    assert secret.encode() not in result.stdout
    assert b"FALCON_H1R_TEST_SECRET" not in result.stdout
    if IS_ROOT:
        assert b"denied PermissionError" in result.stdout


@needs_root
def test_cannot_write_or_delete_outside_its_directory(sandbox, tmp_path):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "keep.txt").write_text("precious")
    litter = f"/tmp/falcon_h1r_redteam_{uuid.uuid4().hex}"
    attempts = {
        "write": f"open({str(guard / 'new.txt')!r}, 'w').write('x')",
        "delete": f"import os\nos.remove({str(guard / 'keep.txt')!r})",
        "rmtree": f"import shutil\nshutil.rmtree({str(guard)!r})",
        "parent": "open('../escape.txt', 'w').write('x')",
        "chmod": f"import os\nos.chmod({str(guard)!r}, 0o777)",
    }
    for name, code in attempts.items():
        result, _ = run(sandbox, code)
        assert result.status == "runtime_error", name
        assert b"PermissionError" in result.stderr, name
    assert sorted(p.name for p in guard.iterdir()) == ["keep.txt"]
    assert (guard / "keep.txt").read_text() == "precious"
    # World-writable /tmp is reachable, but whatever the program leaves there is removed after the run.
    result, _ = run(sandbox, f"open({litter!r}, 'w').write('x')\nprint('written')")
    assert result.stdout == b"written\n"
    assert not os.path.exists(litter)


@needs_root
def test_cannot_signal_the_judge(sandbox):
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: received.append(1))
    try:
        result, _ = run(sandbox, "import os, signal\nos.kill(os.getppid(), signal.SIGUSR1)")
        assert result.status == "runtime_error" and b"PermissionError" in result.stderr
        result, _ = run(sandbox, "import os, signal\nos.kill(-1, signal.SIGUSR1)\nprint('sent')")
        time.sleep(0.2)
        assert received == []
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_program_output_reaches_the_judge_and_cwd_is_fresh(sandbox):
    result, _ = run(sandbox, "import os\nprint(os.listdir('.'), os.getcwd() == os.environ['HOME'])")
    assert result.status == "ok"
    assert result.stdout == b"['solution.py'] True\n"


def test_hostile_programs_judged_in_parallel_do_not_disturb_honest_ones():
    from falcon_h1r.eval.livecodebench import grade_many

    tests = [{"input": "3\n", "output": "9\n", "testtype": "stdin"}]
    honest = "n = int(input())\nprint(n * n)"
    hostile = [
        "while True:\n    pass",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "x = ' ' * (50 * 2**30)",
    ]
    if IS_ROOT:  # without the uid switch this would kill every process of the user running the tests
        hostile.append("import os, signal\nos.kill(-1, signal.SIGKILL)")
    jobs = []
    for code in hostile:
        jobs += [{"code": code, "tests": tests, "timeout": 1.5}, {"code": honest, "tests": tests, "timeout": 1.5}]
    start = time.monotonic()
    results = grade_many(jobs, max_workers=4)
    assert [r.passed for r in results[1::2]] == [True] * len(hostile)
    assert not any(r.passed for r in results[0::2])
    assert time.monotonic() - start < 60


@pytest.mark.skipif(not (IS_ROOT and shutil.which("unshare")), reason="needs root and util-linux unshare")
def test_command_prefix_hook():
    """A stronger isolation layer plugs in as a command prefix; here a PID + network namespace."""
    probe = subprocess.run(["unshare", "--pid", "--net", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"namespaces not permitted here: {probe.stderr.decode()[:200]}")
    boxed = Sandbox(command_prefix=["unshare", "--pid", "--net", "--fork", "--kill-child", "--mount-proc"])
    code = "import os, socket\nprint(os.getpid(), len([p for p in os.listdir('/proc') if p.isdigit()]))"
    result = boxed.run(code, timeout=5)
    assert result.status == "ok", result.stderr
    pid, visible = map(int, result.stdout.split())
    assert visible <= 3  # only the namespace's own processes are visible
    r = grade("print(int(input()) + 1)", [{"input": "1", "output": "2", "testtype": "stdin"}], sandbox=boxed)
    assert r.passed


def test_limits_are_validated():
    with pytest.raises(ValueError, match="memory_mb"):
        SandboxLimits(memory_mb=64)
    with pytest.raises(ValueError, match="mode"):
        Sandbox().run("print(1)", mode="interactive")


def test_no_process_of_any_slot_survives(sandbox):
    """After the suite's hostile runs, no process of any sandbox uid is left behind."""
    if not IS_ROOT:
        pytest.skip("per-slot uids exist only for a root judge")
    leftovers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            uid = int(status.split("Uid:\t", 1)[1].split()[0])
            state = status.split("State:\t", 1)[1][:1]
            if sandbox.uid_base <= uid < sandbox.uid_base + 256 and state not in "ZX":
                leftovers.append(entry.name)
    assert leftovers == []
