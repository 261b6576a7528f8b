"""A Ray cluster of several nodes on this one machine, on loopback: for the tests and the sweep benchmark, or to
try `neurodigits tune --address` before there are machines. Each node is a `ray start --block` in its own
process group, so stopping a node ends exactly its processes (`ray stop` would end every Ray process here)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from neurodigits.net import free_port

LOOPBACK = "127.0.0.2"  # a loopback address that Ray, unlike 127.0.0.1, does not swap for the machine's own IP
RAY = str(Path(sys.executable).parent / "ray")


@dataclass
class Cluster:
    address: str
    env: dict[str, str]  # what every process of the cluster and its drivers share: the auth token, usage stats off
    nodes: list[subprocess.Popen]  # the head first
    node_ids: list[str]  # Ray's node ids, in the same order


def start_node(env: dict[str, str], log: Path, *args: str, cpus: int = 1) -> subprocess.Popen:
    """`ray start --block` on loopback in a process group of its own (`args`: --head ... or --address ...)."""
    return subprocess.Popen([RAY, "start", "--block", "--num-cpus", str(cpus), "--node-ip-address", LOOPBACK,
                             "--object-store-memory", str(80 * 2**20), "--disable-usage-stats", *args],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop_node(node: subprocess.Popen, grace: float = 5) -> None:
    """End a node's process group (its workers exit with its raylet); SIGKILL after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(node.pid, sig)
            node.wait(timeout=grace)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def alive_nodes(address: str, env: dict[str, str]) -> list[dict]:
    """The cluster's live nodes (ray.nodes()), asked from a throwaway driver process."""
    script = ("import json, ray; ray.init(address=%r, log_to_driver=False, logging_level='ERROR'); "
              "print(json.dumps([n for n in ray.nodes() if n['Alive']]))" % address)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    return json.loads(result.stdout.splitlines()[-1]) if result.returncode == 0 and result.stdout.strip() else []


@contextlib.contextmanager
def loopback_cluster(nodes: int = 2, cpus: int = 1, env: dict[str, str] | None = None,
                     timeout: float = 300) -> Iterator[Cluster]:
    """Start a head and `nodes - 1` worker nodes of `cpus` CPUs each; stop them all on exit, even on failure."""
    root = Path(tempfile.mkdtemp(prefix="nd-ray-"))  # short: Ray's socket paths live under it
    env = {**os.environ, "RAY_raylet_start_wait_time_s": "300", **(env or {}),  # patience on a busy machine
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port = free_port(LOOPBACK)
    address = f"{LOOPBACK}:{port}"
    started: list[subprocess.Popen] = []
    try:
        started.append(start_node(env, root / "node-0.log", "--head", "--port", str(port), "--temp-dir",
                                  str(root / "tmp"), "--include-dashboard=false", "--ray-client-server-port",
                                  str(free_port(LOOPBACK)), cpus=cpus))
        deadline = time.monotonic() + timeout
        for count in (1, nodes):  # the head up, then the workers (a custom resource each tells them apart)
            while (len(alive := alive_nodes(address, env)) < count and time.monotonic() < deadline
                   and all(node.poll() is None for node in started)):
                time.sleep(1)
            if len(alive) < count:
                logs = "".join((root / f"node-{i}.log").read_text()[-2000:] for i in range(len(started)))
                raise RuntimeError(f"the loopback Ray cluster did not reach {count} nodes:\n{logs}")
            for n in range(len(started), nodes):
                started.append(start_node(env, root / f"node-{n}.log", "--address", address,
                                          "--resources", json.dumps({f"node-{n}": 1}), cpus=cpus))
        names = ["node:__internal_head__"] + [f"node-{n}" for n in range(1, nodes)]
        ids = [next(node["NodeID"] for node in alive if name in node["Resources"]) for name in names]
        yield Cluster(address, env, started, ids)
    finally:
        for node in reversed(started):
            stop_node(node)
        shutil.rmtree(root, ignore_errors=True)
