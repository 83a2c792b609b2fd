"""Distributed test session: pytest runs on every rank at once.

    mpirun --oversubscribe -n 4 python -m pytest tests/python/spmd -q -p no:cacheprovider

(tests/python/test_mpi_ranks.py does this for 1..4 ranks.) Every rank collects the same tests in
the same order. Two safety nets keep the ranks in step:

* after each test's body, the ranks agree on its outcome: if it failed on any rank, it fails on
  every rank (with the other ranks' errors in the message), so ``-x`` stops all ranks at the same
  test instead of leaving some waiting in the next test's collective;
* a per-test watchdog: a test that runs longer than ``SPMD_TEST_TIMEOUT`` seconds (default 120)
  dumps every thread's stack and exits the rank, which makes mpirun abort the job instead of
  hanging.
"""
from __future__ import annotations

import faulthandler
import os
import sys

import pytest
from mpi4py import MPI

sys.path.insert(0, os.path.dirname(__file__))

from spmd_helpers import WORLD  # noqa: E402

TEST_TIMEOUT = float(os.environ.get("SPMD_TEST_TIMEOUT", "120"))


def pytest_report_header(config):
    return f"spmd: MPI rank {WORLD.Get_rank()} of {WORLD.Get_size()} ({MPI.Get_library_version().splitlines()[0]})"


def pytest_collection_modifyitems(session, config, items):
    # Every rank must run the same tests in the same order: check it once, collectively.
    ids = [item.nodeid for item in items]
    all_ids = WORLD.allgather(ids)
    if any(other != ids for other in all_ids):
        raise pytest.UsageError("ranks collected different tests; run the same command everywhere")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    failure = None
    try:
        result = yield
    except pytest.skip.Exception:
        status = "skip"
        raise_later = sys.exc_info()[1]
    except BaseException as exc:  # noqa: BLE001 - any failure must be shared with the other ranks
        status = f"{type(exc).__name__}: {exc}"[:2000]
        raise_later = exc
        failure = exc
    else:
        status = None
        raise_later = None
    statuses = WORLD.allgather(status)
    failed = {r: s for r, s in enumerate(statuses) if s not in (None, "skip")}
    skipped = [r for r, s in enumerate(statuses) if s == "skip"]
    if failure is not None:
        raise failure
    if failed:
        lines = "\n".join(f"  rank {r}: {s}" for r, s in failed.items())
        raise AssertionError(f"test failed on other rank(s):\n{lines}")
    if skipped and len(skipped) != len(statuses):
        raise AssertionError(f"test skipped on ranks {skipped} only; skips must be collective")
    if raise_later is not None:
        raise raise_later
    return result


_WATCHDOG_FD = None


def pytest_configure(config):
    # The watchdog writes to the real stderr, not to pytest's capture file (lost when it exits).
    global _WATCHDOG_FD
    capman = config.pluginmanager.getplugin("capturemanager")
    try:
        _WATCHDOG_FD = os.dup(capman._global_capturing.err.targetfd_save)
    except Exception:  # noqa: BLE001 - no fd capture: plain stderr is the real one
        _WATCHDOG_FD = None


@pytest.fixture(autouse=True)
def _watchdog():
    target = _WATCHDOG_FD if _WATCHDOG_FD is not None else sys.__stderr__
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True, file=target)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def comm():
    return WORLD


@pytest.fixture
def rank():
    return WORLD.Get_rank()


@pytest.fixture
def size():
    return WORLD.Get_size()


@pytest.fixture(params=[True, False], ids=["empty_rank", "no_empty_rank"])
def empty_rank(request):
    return request.param
