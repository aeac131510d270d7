"""Child processes that marketban starts (the benchmark's worker and lanes, tests' workers).

Explicit start/stop, the log in a file, readiness by the worker's ``/health/ready``.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """``python ARGS...`` with stdout and stderr appended to a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        """Start the process; returns the child itself."""
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter, our arguments
                [sys.executable, *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def exited(self) -> bool:
        """True once the process has ended (or never started)."""
        return self.proc is None or self.proc.poll() is not None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not ended within ``timeout`` (Faust can hang)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        """What the process has written so far."""
        return self.log_path.read_text(errors="replace")


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident memory (VmHWM), in MB; None if it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def is_ready(port: int) -> bool:
    """Whether the worker serving on ``port`` answers 200 on ``/health/ready``."""
    url = f"http://127.0.0.1:{port}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)  # noqa: PLR2004
    except (urllib.error.URLError, OSError):
        return False  # not listening yet, or 503 while it recovers


def wait_ready(child: Child, port: int, within_s: float) -> None:
    """Return once the worker is ready; RuntimeError if it exits, TimeoutError after within_s."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if child.exited():
            raise RuntimeError(f"the worker exited before it was ready; see {child.log_path}")
        if is_ready(port):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the worker was not ready within {within_s:.0f}s; see {child.log_path}")
