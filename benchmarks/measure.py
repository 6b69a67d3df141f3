"""Shared by the benchmark scripts: run a command, measure its wall time and the peak RSS of
its whole process tree (sampled every 0.1 s)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

STEP_TIMEOUT = 1800


def run_measured(
    cmd: list[str],
    stdout: Any = subprocess.DEVNULL,
    timeout: float = STEP_TIMEOUT,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``{"status", "seconds", "peak_rss"}`` of one run of ``cmd`` (in ``env``, default this
    process's environment); killed after ``timeout``."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL, env=env)
    parent = psutil.Process(proc.pid)
    peak, status = 0, "ok"
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            procs = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        if time.perf_counter() - started > timeout:
            for p in [parent, *parent.children(recursive=True)]:
                p.kill()
            status = f"killed after {timeout:.0f} s"
            break
        time.sleep(0.1)
    proc.wait()
    if status == "ok" and proc.returncode == -9:
        status = "killed (out of memory)"
    elif status == "ok" and proc.returncode != 0:
        status = f"failed (exit {proc.returncode})"
    return {"status": status, "seconds": time.perf_counter() - started, "peak_rss": peak}


def worktree(work: Path, rev: str) -> Path:
    """A checkout of ``rev`` in ``work/against`` (a git worktree of this project), to time
    another commit's code in the same run (``PYTHONPATH=<tree>/src``)."""
    tree = work / "against"
    project = Path(__file__).resolve().parents[1]
    if tree.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=project,
                       check=False, capture_output=True)  # fmt: skip
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=project,
                   check=True, capture_output=True)  # fmt: skip
    return tree
