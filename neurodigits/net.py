"""Loopback helpers for the servers and clusters the project starts (the team server, Ray nodes, `serve`),
and for its tests and benchmarks: a free port, whether a URL answers yet, stopping a server."""

from __future__ import annotations

import socket
import subprocess

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on at `host` now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    """Whether a GET of `url` gets 200 (False while the server is not up)."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def stop_server(process: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate a server process; kill it if it has not exited within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
