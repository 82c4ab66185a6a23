"""A lock held by another thread at fork() is free in the child (the audit writer building the
scrubber while the app forks a worker hung the child's audit log for ever)."""

from __future__ import annotations

import os
import threading

import pytest
from nl2sql_observability.forksafe import ForkSafeLock


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_a_lock_held_by_another_thread_at_fork_is_free_in_the_child() -> None:
    lock = ForkSafeLock()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: the holder thread does not exist here
        os._exit(0 if lock.acquire(timeout=5) else 1)
    release.set()
    holder.join(10)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child could not take the lock"
    assert lock.acquire(timeout=5), "the parent's lock must still work"
    lock.release()
