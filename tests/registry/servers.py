"""Real servers for registry tests: an ``mlflow server`` process on 127.0.0.1, and a throwaway
PostgreSQL cluster for its backend store where Debian's postgresql binaries are installed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"server at {url} not up after {seconds} s: {log.read_text()[-2000:]}")


@contextmanager
def _mlflow(
    args: list[str], log: Path, ready: str, *, env: dict[str, str] | None = None, seconds=90
) -> Iterator[str]:
    """Run ``mlflow ARGS --host 127.0.0.1 --port P --workers 1`` until the context ends; yields
    its http:// base URL once ``ready`` (a path) answers 200."""
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    # mlflow starts uvicorn by name: this environment's bin first
    path = f"{mlflow_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(mlflow_bin),
                *args,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}), "PATH": path},
            start_new_session=True,
        )
    try:
        _wait_http(f"http://127.0.0.1:{port}{ready}", proc, log, seconds)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def mlflow_server(backend_store_uri: str, workdir: Path) -> Iterator[str]:
    """``mlflow server`` with ``--serve-artifacts``; yields its http:// URI."""
    args = ["server", "--backend-store-uri", backend_store_uri, "--serve-artifacts"]
    args += ["--artifacts-destination", str(workdir / "artifacts")]
    with _mlflow(args, workdir / "mlflow-server.log", "/health") as uri:
        yield uri


@contextmanager
def model_server(
    model_uri: str, tracking_uri: str, workdir: Path, *, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``mlflow models serve`` of ``model_uri`` in this environment (``--env-manager local``),
    with ``env`` added to its environment; yields its http:// base URL."""
    args = ["models", "serve", "-m", model_uri, "--env-manager", "local"]
    env = {**(env or {}), "MLFLOW_TRACKING_URI": tracking_uri}
    with _mlflow(args, workdir / "model-server.log", "/ping", env=env, seconds=180) as uri:
        yield uri


def postgres_binaries() -> Path | None:
    """The directory of initdb/pg_ctl (Debian keeps them out of PATH), or None."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A fresh PostgreSQL cluster on a free loopback port; yields a SQLAlchemy URI.

    As root (CI here), the cluster runs as the ``postgres`` user, which PostgreSQL requires.
    """
    bindir = postgres_binaries()
    if bindir is None:
        raise FileNotFoundError("no PostgreSQL binaries (initdb, pg_ctl)")
    root = Path(tempfile.mkdtemp(prefix="qrewrite-pg-"))
    data = root / "data"
    port = free_port()
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    if as_root:
        shutil.chown(root, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]

    def run(*cmd: str) -> None:
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8")
        run(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "pg.log"),
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
            "-w",
            "start",
        )
        subprocess.run(
            [
                *prefix,
                str(bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "mlflow",
                "mlflow",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)
