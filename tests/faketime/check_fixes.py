"""Run by the nox session `future` under its preloads, before the suite: the clock is a year ahead and
the first three repairs of libfaketime_fixes.c hold (each check fails under libfaketime alone; the
fourth, a signal handler's clock during a wait, is proven by the PostgreSQL statement_timeout test).
Exit 1 with one line per broken check."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from collections.abc import Callable

YEAR_S = 360 * 86400
WAIT_S = 0.2
libc = ctypes.CDLL(None, use_errno=True)  # the process's global scope: the preloads come first


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _deadline(clock: int, after_s: float) -> Timespec:
    now = Timespec()
    libc.clock_gettime(clock, ctypes.byref(now))
    total_ns = now.tv_sec * 10**9 + now.tv_nsec + int(after_s * 1e9)
    return Timespec(total_ns // 10**9, total_ns % 10**9)


def timed_cond_wait(clock: int) -> float:
    """Seconds a pthread_cond_timedwait on a cond of this clock takes for a deadline WAIT_S ahead."""
    attr, cond, mutex = (ctypes.create_string_buffer(64) for _ in range(3))  # larger than glibc's types
    libc.pthread_condattr_init(attr)
    libc.pthread_condattr_setclock(attr, clock)
    libc.pthread_cond_init(cond, attr)
    libc.pthread_mutex_init(mutex, None)
    libc.pthread_mutex_lock(mutex)
    start = time.monotonic()
    result = libc.pthread_cond_timedwait(cond, mutex, ctypes.byref(_deadline(clock, WAIT_S)))
    waited = time.monotonic() - start
    libc.pthread_mutex_unlock(mutex)
    libc.pthread_cond_destroy(cond)
    if result != 110:  # ETIMEDOUT
        raise SystemExit(f"pthread_cond_timedwait on clock {clock} returned {result}, not ETIMEDOUT")
    return waited


def timed_cond_wait_in_child(clock: int) -> str | None:
    """What is wrong with a timed wait on a cond of this clock, in a child: a wrong deadline could be a
    year away."""
    code = f"import check_fixes; print(check_fixes.timed_cond_wait({clock}))"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.abspath(__file__))}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "did not end within 30 s"
    if proc.returncode:
        return proc.stderr.strip()
    waited = float(proc.stdout)
    return None if WAIT_S <= waited < 10 * WAIT_S else f"took {waited:.3f} s"


def _closer(fd: int) -> Callable[[], None]:
    def close() -> None:
        os.close(fd)

    return close


def problems() -> list[str]:
    found = []
    # `date` without the preloads tells the real time
    real = float(subprocess.run(["date", "+%s"], capture_output=True, text=True, env={}, check=True).stdout)
    if time.time() - real < YEAR_S:
        found.append(f"the wall clock is not a year ahead ({time.time():.0f} vs the real {real:.0f})")
    start = time.monotonic()
    try:
        time.sleep(WAIT_S)  # an absolute clock_nanosleep on CLOCK_MONOTONIC
    except OSError as error:
        found.append(f"time.sleep({WAIT_S}) failed: {error}")
    else:
        if not WAIT_S <= time.monotonic() - start < 10 * WAIT_S:
            found.append(f"time.sleep({WAIT_S}) took {time.monotonic() - start:.3f} s")
    for fd, name in ((0, "stdin"), (1, "stdout")):
        child = f"import os, sys\ntry:\n    os.fstat({fd})\nexcept OSError:\n    sys.exit(0)\nsys.exit(1)"
        closed = subprocess.run([sys.executable, "-c", child], preexec_fn=_closer(fd), check=False)
        if closed.returncode:
            found.append(f"a child started with {name} closed sees it open")
    for name, clock in (("monotonic", time.CLOCK_MONOTONIC), ("realtime", time.CLOCK_REALTIME)):
        wrong = timed_cond_wait_in_child(clock)
        if wrong:
            found.append(f"a {WAIT_S} s timed wait on a {name} condition variable {wrong}")
    return found


if __name__ == "__main__":
    broken = problems()
    for line in broken:
        print(f"check_fixes: {line}", file=sys.stderr)
    sys.exit(1 if broken else 0)
