"""The app as a visitor reaches it: `python app.py` (the bundled model, as `make run` does) in a
subprocess on a free loopback port, for the scripts that measure it (soak, bench_visitors)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Served:
    url: str
    process: subprocess.Popen
    tmp: Path  # the app's temporary folder (records, Gradio's cache, its log)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, server: subprocess.Popen, timeout: float = 300) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server.poll() is not None:
            raise SystemExit(f"the app exited with status {server.returncode}")
        try:
            urllib.request.urlopen(url + "config", timeout=5).read()
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"the app did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def served_app(threads: int | None = None, prefix: str = "pjudge-app-") -> Iterator[Served]:
    """Start the app, wait until it answers, stop it on exit; its log is printed if it failed or
    the block raised. `threads` sets the app's torch threads (OMP_NUM_THREADS; None: torch's own)."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", HF_HUB_OFFLINE="1",
               GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(tmp / "gradio"), TMPDIR=str(tmp))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log = open(tmp / "app.log", "w")  # noqa: SIM115 (a pipe nobody reads could fill and block the app)
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    failed = True
    try:
        wait_up(url, server)
        yield Served(url, server, tmp)
        failed = False
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        if failed or server.returncode not in (0, -15, None):
            print((tmp / "app.log").read_text()[-3000:], file=sys.stderr)
