"""Start server processes from a parent that has already imported the heavy modules.

Importing torch, transformers and the server's stack costs about 3.5 s of CPU in every new interpreter, and the
suite starts dozens of servers. A *prefork parent* (one per test process, started on first use) imports them
once; each server is then a ``fork()`` of it that runs ``python -m MODULE ARGS`` exactly as a fresh interpreter
would (``runpy``, its own environment, working directory and log file, the usual exit path), so what runs is the
real server in a process of its own, reached over loopback, stopped by real signals.

A fork sees the modules as the parent imported them, so settings that those modules read at import time must be
the same: :func:`can_fork` allows a fork only when every such variable (``HF_*``, ``HOME``, ``TORCH*``, ...) is
equal in the new environment and in the parent's, and the caller starts a fresh interpreter otherwise. Tests of the
command line itself keep starting fresh interpreters. ``TEST_PREFORK=0`` turns the parent off.

The parent talks JSON lines over its stdin and stdout: ``spawn`` forks a child and answers its pid; ``poll`` reaps
what has exited and answers a child's exit code (``None`` while it runs). Signals go straight to the child's pid.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

# Modules whose import is the cost; none of them reads the worker's settings at import time.
PRELOAD = ("torch", "transformers", "numpy", "av", "soundfile", "fastapi", "uvicorn", "httpx", "pydantic_settings",
           "higgs_worker.http", "higgs_worker.speech.service", "higgs_worker.engine", "higgs_worker.engine.loader",
           "transformers.models.higgs_audio_v2")
# Environment variables that the preloaded modules (or Python itself) may read while importing.
IMPORT_TIME_PREFIXES = ("HF_", "HUGGINGFACE", "TRANSFORMERS", "TOKENIZERS", "SAFETENSORS", "TORCH", "PYTORCH", "CUDA",
                        "NVIDIA", "OMP_", "MKL_", "OPENBLAS", "NUMEXPR", "KMP_", "PYTHON", "HOME", "XDG_", "TMPDIR",
                        "LD_", "LANG", "LC_", "PATH", "USER", "TZ")


# Stdio buffering and bytecode writing: the child sets its own streams, and neither changes what a module does.
NOT_IMPORT_TIME = ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE")


def _import_time(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_PREFIXES) and k not in NOT_IMPORT_TIME}


# -- the parent process ------------------------------------------------------------------------------------------

def _child(request: dict, sigint) -> None:
    """In the forked child: become ``python -m MODULE ARGS`` in its own environment; never returns."""
    import runpy
    import signal

    code = 1
    try:
        _die_with_parent()
        # As a fresh interpreter has them (SIGPIPE and SIGXFSZ stay ignored, as Python sets them at start; SIGINT
        # stays ignored where it was ignored when this interpreter started, as under `cmd &` in a script).
        signal.signal(signal.SIGINT, sigint)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        sys.stdin = sys.__stdin__ = open(0, closefd=False)  # noqa: SIM115 - the process's own standard streams
        sys.stdout = sys.__stdout__ = open(1, "w", buffering=1, closefd=False, encoding="utf-8")  # noqa: SIM115
        sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False, encoding="utf-8",  # noqa: SIM115
                                           errors="backslashreplace")
        sys.argv = [request["module"], *request["args"]]
        sys.path[0] = os.getcwd()  # as ``python -m`` has it
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 - printed as the interpreter would, then exit 1
            import traceback

            traceback.print_exc()
            code = 1
        # The interpreter's own exit: wait for non-daemon threads, run atexit handlers, flush.
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            shutdown()
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - a failure before the module ran (its cwd, its log): said on stderr
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _die_with_parent() -> None:
    """The child is killed if the prefork parent dies (a crashed test process leaves no server running)."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG; the parent has one thread, so this is safe


def _preload() -> str | None:
    """Import the heavy modules; what makes forking unsafe, or None."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    import torch

    if threading.active_count() != 1 or len(os.listdir("/proc/self/task")) != 1:
        return f"{len(os.listdir('/proc/self/task'))} threads after the imports: fork is unsafe"
    if torch.cuda.is_initialized():
        return "CUDA was initialised by an import: a forked child could not use it"
    late = [m for m in ("runpod", "higgs_worker.cli") if m in sys.modules]
    if late:  # runpod reads its settings at import; the CLI must run as __main__, not be imported first
        return f"{', '.join(late)} imported by the preload"
    return None


def serve() -> None:
    """The parent's loop: requests on stdin, answers on stdout, one JSON object per line.

    Children are known by a serial id, never by pid alone: the parent reaps them, so it signals only a child it
    has not reaped yet, whose pid cannot have been given to another process.
    """
    import signal

    sigint = signal.getsignal(signal.SIGINT)  # as this interpreter started: ignored where its parent ignored it
    problem = _preload()
    control_in = os.fdopen(os.dup(0), "r")
    control_out = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # stray reads and prints stay off the control pipe
    os.dup2(2, 1)
    os.close(null)
    live: dict[int, int] = {}  # id -> pid, not reaped yet
    exited: dict[int, int] = {}  # id -> exit code

    def reap() -> None:
        by_pid = {pid: child for child, pid in live.items()}
        while live:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in by_pid:
                exited[by_pid[pid]] = os.waitstatus_to_exitcode(status)
                del live[by_pid[pid]]

    control_out.write(json.dumps({"ready": problem is None, "problem": problem}) + "\n")
    if problem is not None:
        return
    for line in control_in:
        request = None
        try:
            request = json.loads(line)
            reap()
            if request["op"] == "spawn":
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    control_in.close()
                    control_out.close()
                    _child(request, sigint)
                live[request["id"]] = pid
                answer = {"pid": pid}
            elif request["op"] == "signal":
                sent = request["id"] in live
                if sent:
                    os.kill(live[request["id"]], request["signal"])
                answer = {"sent": sent}
            else:
                answer = {"rc": exited.get(request["id"])}
        except Exception as exc:  # noqa: BLE001 - answered, the loop goes on
            answer = {"error": f"{exc.__class__.__name__}: {exc}"}
        control_out.write(json.dumps({"id": request.get("id") if isinstance(request, dict) else None, **answer})
                          + "\n")
    # The test process has gone: its servers go too, as a terminal's would.
    for pid in live.values():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while live and time.monotonic() < deadline:
        reap()
        time.sleep(0.05)
    for pid in live.values():
        os.kill(pid, signal.SIGKILL)


# -- the test side -----------------------------------------------------------------------------------------------

class ForkedProcess:
    """The part of :class:`subprocess.Popen` the tests use, for a child of the prefork parent."""

    stdout = None

    def __init__(self, parent: "PreforkParent", child: int, pid: int, args: list[str]) -> None:
        self._parent = parent
        self._child = child
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._parent.exit_code(self._child, self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            self._parent.signal(self._child, sig)

    def terminate(self) -> None:
        import signal

        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        import signal

        self.send_signal(signal.SIGKILL)


class PreforkParent:
    """The test process's handle on its prefork parent. Any failure of the parent marks it broken: no more forks
    (servers start as fresh interpreters), and the children it had are watched through ``/proc``."""

    def __init__(self) -> None:
        import tempfile

        self.env = dict(SESSION_ENV)
        self._import_env = _import_time(self.env)
        self.broken = False
        self._lock = threading.Lock()
        self._ids = 0
        self._errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 - what the parent says, for a failed start
        self.proc = subprocess.Popen([sys.executable, "-c", "import prefork; prefork.serve()"], env=self.env,
                                     cwd=Path(__file__).parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._errors, text=True, bufsize=1)
        hello = self._read()
        if not hello.get("ready"):
            self.close()
            raise RuntimeError(f"the prefork parent refused to start: {hello.get('problem')}")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self._errors.seek(0)
            raise RuntimeError(f"the prefork parent exited ({self.proc.wait(10)}):\n{self._errors.read()[-4000:]}")
        return json.loads(line)

    def _ask(self, request: dict) -> dict:
        with self._lock:
            if self.broken:
                raise RuntimeError("the prefork parent is broken")
            try:
                self.proc.stdin.write(json.dumps(request) + "\n")
                self.proc.stdin.flush()
                answer = self._read()
                if answer.get("id") != request["id"]:
                    raise RuntimeError(f"answer {answer} to request {request}")
            except BaseException:
                self.broken = True
                raise
        if "error" in answer:
            raise RuntimeError(f"the prefork parent could not {request['op']}: {answer['error']}")
        return answer

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def can_fork(self, env: dict[str, str]) -> bool:
        return not self.broken and self.proc.poll() is None and _import_time(env) == self._import_env

    def spawn(self, module: str, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> ForkedProcess:
        child = self._next_id()
        answer = self._ask({"op": "spawn", "id": child, "module": module, "args": list(args), "env": env,
                            "cwd": str(Path(cwd).resolve()), "log": str(Path(log).resolve())})
        return ForkedProcess(self, child, answer["pid"], [module, *args])

    def exit_code(self, child: int, pid: int) -> int | None:
        if self.broken:  # its children were killed with it (PR_SET_PDEATHSIG), or end on their own
            return None if _running(pid) else -1
        return self._ask({"op": "poll", "id": child})["rc"]

    def signal(self, child: int, sig: int) -> None:
        if self.broken:
            raise RuntimeError("the prefork parent is broken; its children were killed with it")
        self._ask({"op": "signal", "id": child, "signal": int(sig)})

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._errors.close()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# The environment as the test session set it up, before any test changes it (this module is imported while tests
# are collected): the parent starts with it, whichever test asks first.
SESSION_ENV = dict(os.environ)
_parent: PreforkParent | None = None
_parent_lock = threading.Lock()


_failed: str | None = None


def parent() -> PreforkParent | None:
    """This process's prefork parent, started on first use; None when ``TEST_PREFORK=0``, or when it could not
    start (said once, as a warning: every server then starts as a fresh interpreter)."""
    global _parent, _failed
    if os.environ.get("TEST_PREFORK", "1") == "0" or _failed is not None:
        return None
    with _parent_lock:
        if _parent is None:
            try:
                _parent = PreforkParent()
            except Exception as exc:  # noqa: BLE001 - the tests still run, only slower
                import warnings

                _failed = str(exc)
                warnings.warn(f"servers start as fresh interpreters: {exc}", RuntimeWarning, stacklevel=2)
                return None
            atexit.register(_parent.close)
        return _parent
