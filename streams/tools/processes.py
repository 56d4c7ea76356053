"""The service's processes as children: started, probed over HTTP, signalled and stopped.

Used by the tools that run the whole loop on one machine (``demo``, ``chaos``) and by the
integration tests, so that all of them start and stop routers and workers the same way.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = REPO / "scripts" / "kafka.sh"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """GET ``url`` and parse the JSON body."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class ServiceProcess:
    """One child process running a module of the project (default ``streams.cli``: ``serve``,
    ``worker``, ...) with its output in a log file."""

    def __init__(self, name: str, args: list[str], log_path: Path, env: dict[str, str] | None = None,
                 web_port: int | None = None, module: str = "streams.cli") -> None:
        self.name = name
        self.args = args
        self.module = module
        self.log_path = log_path
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.web_port = web_port
        if web_port is not None:
            self.env["PORT_ROUTER__ROUTER__WEB_PORT"] = str(web_port)
        self.process: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        """Start the process (returns at once)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.log_path.open("a")
        self.process = subprocess.Popen([sys.executable, "-m", self.module, *self.args], stdout=handle,
                                        stderr=subprocess.STDOUT, env=self.env, cwd=REPO)
        handle.close()
        return self

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def url(self, path: str) -> str:
        """``http://127.0.0.1:<web port><path>``."""
        return f"http://127.0.0.1:{self.web_port}{path}"

    def wait_ready(self, timeout: float = 240.0) -> None:
        """Wait until ``/ready`` answers 200; RuntimeError (with the log tail) if the process exits,
        TimeoutError when the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(f"{self.name} exited ({code}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("/ready"), timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} not ready in {timeout:.0f}s:\n{self.log_tail()}")

    def state(self) -> dict[str, Any]:
        """The router's ``/state`` page."""
        return get_json(self.url("/state"))

    def send(self, sig: int) -> None:
        """Send ``sig`` if the process runs."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        """Send ``sig`` and wait for the exit (SIGKILL after ``timeout``)."""
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        """The end of the process's log."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def router(config_path: str | Path, log_path: Path, name: str = "router", web_port: int | None = None,
           env: dict[str, str] | None = None) -> ServiceProcess:
    """A ``port-router serve`` process on its own web port (a free one unless given)."""
    return ServiceProcess(name, ["serve", "--config", str(config_path)], log_path, env,
                          web_port=free_port() if web_port is None else web_port)


def worker(config_path: str | Path, model: str, log_path: Path, env: dict[str, str] | None = None) -> ServiceProcess:
    """A replay ``port-router worker`` process for ``model``."""
    return ServiceProcess(f"worker {model}", ["worker", "--config", str(config_path), "--model", model], log_path,
                          env)


def wait_for_groups(kafka_conf: dict[str, str], groups: list[str], children: list[ServiceProcess],
                    timeout: float) -> None:
    """Wait until every consumer group of ``groups`` has a member (a worker joined it); RuntimeError (with its log
    tail) when one of ``children`` exits first, TimeoutError when the time runs out."""
    from streams.kafka import admin_client, group_members

    admin = admin_client(kafka_conf)
    deadline = time.monotonic() + timeout
    waiting = list(groups)
    while waiting:
        for child in children:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
        waiting = [group for group in waiting if group_members(admin, group) == 0]
        if waiting and time.monotonic() > deadline:
            raise TimeoutError(f"no member in consumer groups {waiting} after {timeout:.0f}s")
        if waiting:
            time.sleep(0.5)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` in this process, so that its ``finally`` blocks stop the children it
    started (the default action ends this process alone and leaves them running)."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def stop_all(processes: list[ServiceProcess], timeout: float = 30.0) -> None:
    """Terminate every process (in reverse order) and wait for each."""
    for process in reversed(processes):
        process.send(signal.SIGCONT)  # a paused process cannot handle SIGTERM
        process.send(signal.SIGTERM)
    for process in reversed(processes):
        process.stop(signal.SIGTERM, timeout)
