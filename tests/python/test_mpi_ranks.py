"""Runs the distributed test suite (tests/python/spmd) under mpirun at 1, 2, 3 and 4 ranks.

A plain pytest file for a normal, single process: each case starts

    mpirun --oversubscribe -n N python -m pytest tests/python/spmd -q -x -p no:cacheprovider

with OpenMPI's run-as-root variables set, under a timeout. A run that does not finish in time is
killed (mpirun and every rank it started) and the case fails; it never hangs the caller.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPMD_DIR = ROOT / "tests" / "python" / "spmd"
TIMEOUT_S = float(os.environ.get("SPMD_MPIRUN_TIMEOUT", "600"))

_under_mpirun = any(
    v in os.environ for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
)

pytestmark = [
    pytest.mark.skipif(_under_mpirun, reason="launches mpirun itself; run it in a plain process"),
    pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun not found"),
]


def _session_processes(sid):
    """Process ids in session ``sid`` (mpirun is started as a session leader, its ranks inherit
    the session even though OpenMPI gives each rank its own process group)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
        if len(fields) > 3 and int(fields[3]) == sid:  # state ppid pgrp session
            pids.append(int(entry))
    return pids


def _kill_run(proc):
    """Stop mpirun and every process it started: SIGTERM first (mpirun forwards it to the ranks),
    then SIGKILL to whatever is left in its session."""
    sid = proc.pid
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    deadline = time.monotonic() + 10
    while True:
        left = [p for p in _session_processes(sid) if p != os.getpid()]
        if not left or time.monotonic() > deadline:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def _run_mpirun(n):
    env = dict(os.environ)
    env.update(
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        PYTHONUNBUFFERED="1",
    )
    cmd = [
        "mpirun", "--oversubscribe", "-n", str(n),
        sys.executable, "-m", "pytest", str(SPMD_DIR.relative_to(ROOT)),
        "-q", "-x", "-p", "no:cacheprovider", "--color=no",
    ]
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
    )
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_run(proc)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # a straggler still holds the pipe: give up reading
            out = "<output unavailable: a process kept the pipe open after the kill>"
    return proc.returncode, out or "", timed_out, time.monotonic() - start, cmd


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_spmd_suite_under_mpirun(n):
    rc, out, timed_out, elapsed, cmd = _run_mpirun(n)
    summary = [line for line in out.splitlines() if " in " in line and ("passed" in line or "failed" in line or "error" in line)]
    print(f"{' '.join(cmd)}\n-> rc={rc} in {elapsed:.1f} s; rank summaries:\n  " + "\n  ".join(summary))
    if timed_out or rc != 0:
        print(out)  # the whole output of every rank, shown by pytest for the failed case
        reason = f"timed out after {TIMEOUT_S:.0f} s and was killed" if timed_out else f"exited with {rc}"
        tail = "\n".join(out.splitlines()[-60:])
        pytest.fail(f"mpirun -n {n} {reason}; last lines:\n{tail}", pytrace=False)
