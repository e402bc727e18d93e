"""A hub server run as a process of its own for the length of a ``with`` block (`lienthong
serve` from the source tree or from an installed wheel), ready when its ``/readyz`` says so."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from hub.testing.waiting import TimedOut, wait_for

# What a failure quotes of the server's output: its start-up and its last words fit.
_OUTPUT_QUOTED = 1 << 20


def _named(args: Any) -> str:
    return " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)


def wait_until_ready(proc: subprocess.Popen[bytes], base: str, *, timeout: float = 60.0,
                     output: Callable[[], str] | None = None) -> None:
    """Until ``base``/readyz answers 200 (a server's or a worker's health endpoint). A process
    that exits first fails the wait with what it said (``output``, else its stdout pipe); one
    that is late fails it with the last answer."""
    last = "nothing (no connection)"

    def ready() -> bool:
        nonlocal last
        if proc.poll() is not None:
            said = output() if output else (
                proc.stdout.read().decode(errors="replace") if proc.stdout else "")
            raise AssertionError(f"{_named(proc.args)} exited ({proc.returncode}): {said}")
        try:
            answer = httpx.get(f"{base}/readyz", timeout=1)
        except httpx.TransportError as exc:
            last = f"nothing ({type(exc).__name__})"
            return False
        last = f"{answer.status_code} {answer.text[:500]}"
        return answer.status_code == 200

    try:
        wait_for(ready, timeout, f"{base}/readyz to answer 200", interval=0.1)
    except TimedOut as late:
        raise AssertionError(f"{late}; it last answered {last}") from None


@contextmanager
def serving(command: Sequence[str], port: int, *, timeout: float = 60.0,
            **popen: Any) -> Iterator[str]:
    """Start ``command``, a server listening on ``port`` (``popen``: ``env``, ``cwd``,
    ``umask``... for ``subprocess.Popen``), and yield its base URL once ``/readyz`` answers 200.
    A server that exits before then fails the wait with its output. On leaving the block it is
    stopped as an operator would (SIGINT, so that it finishes what it holds), and killed if it
    has not stopped 20 s later."""
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, **popen)

        try:
            # pread: the server's file offset stays where it was.
            wait_until_ready(proc, base, timeout=timeout, output=lambda: os.pread(
                out.fileno(), _OUTPUT_QUOTED, 0).decode(errors="replace"))
            yield base
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
