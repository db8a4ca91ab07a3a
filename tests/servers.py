"""Helpers that start real processes on loopback for end-to-end tests, and wait for readiness by polling."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import httpx

import prefork


class LoopbackHTTPServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) for the length of a ``with`` block."""

    def __init__(self, handler) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_folder(folder: Path) -> LoopbackHTTPServer:
    """Static files of ``folder`` over HTTP on loopback."""
    return LoopbackHTTPServer(partial(SimpleHTTPRequestHandler, directory=str(folder)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float = 120.0, what: str = "condition", proc: subprocess.Popen | None = None):
    """Poll ``check()`` until it returns a truthy value; fail with the process output if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"process exited ({proc.returncode}) before {what}:\n{out[-4000:]}")
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def start_cli(args: list[str], env: dict[str, str], cwd: Path, log) -> "subprocess.Popen | prefork.ForkedProcess":
    """``python -m higgs_worker.cli ARGS`` with its output in the open file ``log``: forked from the prefork parent
    when the environment allows (see ``prefork.py``: the same process, without importing PyTorch again), else a
    fresh interpreter."""
    parent = prefork.parent()
    if parent is not None and parent.can_fork(env):
        log.flush()
        try:
            return parent.spawn("higgs_worker.cli", args, env, cwd, Path(log.name))
        except RuntimeError:  # the parent failed (and is now marked broken): start the usual way
            pass
    return subprocess.Popen([sys.executable, "-m", "higgs_worker.cli", *args], env=env, cwd=cwd, stdout=log,
                            stderr=subprocess.STDOUT)


class Server:
    """``higgs-worker serve`` in a subprocess on 127.0.0.1."""

    def __init__(self, env: dict[str, str], cwd: Path, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("MODEL_PATH", "TOKENIZER_PATH", "HIGGS_DEMO", "API_KEYS")}
        full_env.update(env)
        full_env["PYTHONUNBUFFERED"] = "1"
        self.log = cwd / f"server-{self.port}.out"
        self._log_file = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = start_cli(["serve", "--host", "127.0.0.1", "--port", str(self.port), *args], full_env, cwd,
                              self._log_file)

    def wait_ready(self, timeout: float = 180.0, headers: dict | None = None) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.output()[-4000:]}")
            try:
                return httpx.get(f"{self.url}/ping", timeout=2, headers=headers).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, "the server to answer /ping with 200")

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig_term: bool = True) -> int:
        if self.proc.poll() is None:
            self.proc.terminate() if sig_term else self.proc.kill()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


def run_coroutine(coro):
    """``asyncio.run`` on a thread of its own: this process may already run an event loop on its main thread
    (the browser tests' Playwright keeps one), and ``asyncio.run`` refuses to nest."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def runpod_worker(env_extra: dict[str, str], cwd: Path, args: tuple[str, ...] = ()):
    """``higgs-worker handler`` (the RunPod queue worker) with the session's environment, minus RunPod and AWS
    variables and demo mode, plus ``env_extra``; its output goes to ``cwd/worker-PORT.log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "AWS_", "HIGGS_DEMO"))}
    env.update(env_extra)
    env["PYTHONUNBUFFERED"] = "1"
    log = open(cwd / f"worker-{free_port()}.log", "w")  # noqa: SIM115 - lives as long as the process
    return start_cli(["handler", *args], env, cwd, log)


def off_the_event_loop(fn, *args):
    """``fn(*args)`` on a fresh thread: code that calls ``asyncio.run`` cannot run where a loop is already running
    (the Playwright tests leave one in the worker's main thread)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()
