"""Real servers started by tests: a free localhost port, waiting until one answers, stopping
it, and `mlflow models serve` of a registered model."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, *, what: str, timeout: float = 180,
                  log: Callable[[], str] = lambda: "") -> None:
    """Until `url` answers; fails at once, with the log's tail, if `process` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up (exit {process.poll()}):\n{log()[-4000:]}")
        time.sleep(1)


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def served_model(model_uri: str, *, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """`mlflow models serve` of `model_uri` in this venv; yields its base URL once /ping answers."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ping", server, what=f"the model server for {model_uri}")
        yield url
    finally:
        stop(server)
