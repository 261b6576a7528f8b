"""A team tracking server: `mlflow server` on a PostgreSQL backend store, with artifacts proxied by the server.

`python -m neurodigits.team_server` (what `make server` runs) keeps a PostgreSQL cluster and the artifacts under
`mlflow/server/` and serves on 127.0.0.1:5050 until Ctrl-C (or SIGTERM), which stops both cleanly. Clients set
`MLFLOW_TRACKING_URI=http://HOST:PORT`; they need neither the database nor the artifact folder.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from neurodigits import NeuroDigitsError
from neurodigits.net import answers, free_port
from neurodigits.params import project_root

DATABASE = "mlflow"  # the database, and the cluster's superuser that MLflow connects as


def postgres_bin() -> Path:
    """The folder of PostgreSQL's server programs (Debian keeps them out of PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    if not initdb:
        raise NeuroDigitsError("PostgreSQL is not installed; apt-get install postgresql (Debian/Ubuntu)")
    return Path(initdb).parent


def _owner() -> dict:
    """PostgreSQL refuses to run as root: run it as the `postgres` user then."""
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}


def _run(cmd: list, what: str) -> None:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **_owner())
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise NeuroDigitsError(f"{what} failed: {last[0]}")


def _wait(ready, process: subprocess.Popen, what: str, log: Path | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text().strip().splitlines()[-1:] if log and log.exists() else []
            raise NeuroDigitsError(f"{what} did not start" + (f": {tail[0]}" if tail else "") +
                                   (f" (log: {log})" if log else ""))
        time.sleep(0.2)


def start_postgres(data_dir: Path, port: int) -> subprocess.Popen:
    """Initialise the cluster once (trust auth, loopback only), start it, and create the MLflow database."""
    bin_dir = postgres_bin()
    if not (data_dir / "PG_VERSION").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data_dir, "postgres", "postgres")
        _run([bin_dir / "initdb", "-D", data_dir, "-U", DATABASE, "--auth=trust", "-E", "UTF8", "--no-instructions"],
             f"initdb in {data_dir} (the postgres user must be able to reach that folder)")
    log = data_dir.parent / "postgres.log"
    with open(log, "ab") as out:
        server = subprocess.Popen([bin_dir / "postgres", "-D", data_dir, "-p", str(port),
                                   "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **_owner())
    isready = [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
    with _stopped_on_error(server, signal.SIGINT):
        _wait(lambda: subprocess.run(isready).returncode == 0, server, "PostgreSQL", log)
        exists = subprocess.run([bin_dir / "psql", "-h", "127.0.0.1", "-p", str(port), "-U", DATABASE, "-d",
                                 "postgres", "-Atc", f"select 1 from pg_database where datname = '{DATABASE}'"],
                                capture_output=True, text=True).stdout.strip()
        if not exists:
            _run([bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", DATABASE, DATABASE], "createdb")
    return server


def start_mlflow(store_uri: str, artifacts: Path, host: str, port: int, workers: int) -> subprocess.Popen:
    """`mlflow server` with the database as backend store; clients upload artifacts through it."""
    artifacts.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri, "--serve-artifacts",
         "--artifacts-destination", str(artifacts.resolve()), "--host", host, "--port", str(port),
         "--workers", str(workers)],
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, start_new_session=True)
    with _stopped_on_error(server):
        _wait(lambda: answers(f"http://{host}:{port}/health"), server, f"mlflow server on {host}:{port}", timeout=300)
    return server


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Send `sig` to a server (its workers follow); kill its process group if it takes over 15 s."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def _stopped_on_error(process: subprocess.Popen, sig: int = signal.SIGTERM) -> Iterator[None]:
    """Stop a server that has not come up (an error, or Ctrl-C while waiting for it)."""
    try:
        yield
    except BaseException:
        stop(process, sig)
        raise


def serve(root: Path, host: str, port: int, pg_port: int, workers: int) -> None:
    """Run PostgreSQL and the MLflow server until Ctrl-C or SIGTERM, then stop both (MLflow first)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops it, also when started from a script's
    # background job, which starts with SIGINT ignored
    pg_port = pg_port or free_port()
    database = start_postgres(root / "postgres", pg_port)
    try:
        server = start_mlflow(f"postgresql://{DATABASE}@127.0.0.1:{pg_port}/{DATABASE}", root / "artifacts",
                              host, port, workers)
        try:
            print(f"MLflow team server on http://{host}:{port} (PostgreSQL on 127.0.0.1:{pg_port}, data in "
                  f"{root}); clients: export MLFLOW_TRACKING_URI=http://{host}:{port}; Ctrl-C stops it",
                  file=sys.stderr, flush=True)
            while server.poll() is None and database.poll() is None:
                time.sleep(0.5)
            raise NeuroDigitsError(f"{'mlflow server' if server.poll() is not None else 'PostgreSQL'} exited")
        except KeyboardInterrupt:
            print("stopping the MLflow server and PostgreSQL", file=sys.stderr, flush=True)
        finally:
            stop(server)
    finally:
        stop(database, signal.SIGINT)  # PostgreSQL's "fast" shutdown


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurodigits.team_server", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=project_root() / "mlflow" / "server",
                        help="folder for the database cluster and the artifacts (default: mlflow/server)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: the whole network)")
    parser.add_argument("--port", type=int, default=5050)
    parser.add_argument("--pg-port", type=int, default=0, help="PostgreSQL's port (default: a free one)")
    parser.add_argument("--workers", type=int, default=2, help="MLflow server worker processes")
    args = parser.parse_args(argv)
    try:
        serve(args.root.resolve(), args.host, args.port, args.pg_port, args.workers)
    except NeuroDigitsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
