"""The prefork parent starts processes that behave as fresh ``python -m`` interpreters would."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import prefork

PROBE = '''
import json, os, signal, sys, threading
what = {
    "signals": {s.name: str(signal.getsignal(s)) for s in signal.valid_signals() if isinstance(s, signal.Signals)},
    "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    "threads": threading.active_count(), "name": __name__, "argv": sys.argv[1:], "path0": sys.path[0],
    "cwd": os.getcwd(), "marker": os.environ.get("PROBE_MARKER"), "stdin": sys.stdin.read(),
}
print(json.dumps(what))
print("to stderr", file=sys.stderr)
if sys.argv[1:] == ["wait"]:
    signal.pause()
sys.exit(int(sys.argv[1]) if sys.argv[1:] and sys.argv[1].isdigit() else 0)
'''


@pytest.fixture()
def probe_dir(tmp_path):
    (tmp_path / "probe_mod.py").write_text(PROBE)
    return tmp_path


def fresh(probe_dir, *args: str) -> tuple[dict, int]:
    env = {**prefork.SESSION_ENV, "PROBE_MARKER": "here"}
    proc = subprocess.run([sys.executable, "-m", "probe_mod", *args], cwd=probe_dir, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=60)
    return json.loads(proc.stdout.splitlines()[0]), proc.returncode


def forked(probe_dir, *args: str) -> tuple[prefork.ForkedProcess, Path]:
    parent = prefork.parent()
    env = {**prefork.SESSION_ENV, "PROBE_MARKER": "here"}
    assert parent is not None and parent.can_fork(env)
    log = probe_dir / f"forked-{'-'.join(args) or 'plain'}.log"
    return parent.spawn("probe_mod", list(args), env, probe_dir, log), log


def test_a_forked_child_sees_what_a_fresh_interpreter_sees(probe_dir):
    expected, code = fresh(probe_dir, "a", "b")
    proc, log = forked(probe_dir, "a", "b")
    assert proc.wait(60) == 0 and code == 0
    lines = log.read_text().splitlines()
    seen = json.loads(lines[0])
    assert seen == expected  # signal dispositions, blocked signals, one thread, __main__, argv, sys.path, cwd, env
    assert seen["name"] == "__main__" and seen["marker"] == "here" and seen["stdin"] == ""
    assert lines[1] == "to stderr"  # both streams go to the log, line by line


def test_exit_codes_and_signals_come_back_as_popen_gives_them(probe_dir):
    proc, _ = forked(probe_dir, "3")
    assert proc.wait(60) == 3 and proc.poll() == 3
    waiting, log = forked(probe_dir, "wait")
    with pytest.raises(subprocess.TimeoutExpired):
        waiting.wait(0.3)
    assert waiting.poll() is None
    # the probe prints before it pauses: once its line is there, it is waiting for the signal
    from servers import wait_until

    wait_until(lambda: log.exists() and log.read_text().count("\n") >= 2, 30, "the probe to start")
    waiting.terminate()
    assert waiting.wait(30) == -signal.SIGTERM


def test_an_environment_that_modules_read_at_import_time_gets_a_fresh_interpreter():
    parent = prefork.parent()
    assert parent is not None
    same = dict(prefork.SESSION_ENV)
    assert parent.can_fork({**same, "MODEL_PATH": "/elsewhere", "PYTHONUNBUFFERED": "1"})
    for name, value in (("HF_ENDPOINT", "http://127.0.0.1:1"), ("HOME", "/nowhere"), ("TORCH_HOME", "/t"),
                        ("PYTHONPATH", "/p"), ("OMP_NUM_THREADS", "7")):
        assert not parent.can_fork({**same, name: value}), name


def test_a_child_that_cannot_start_exits_1_and_signals_after_the_end_reach_nobody(probe_dir, tmp_path):
    parent = prefork.parent()
    assert parent is not None
    gone = parent.spawn("probe_mod", [], dict(prefork.SESSION_ENV), tmp_path / "no-such-folder", tmp_path / "x.log")
    assert gone.wait(30) == 1
    gone.kill()  # its pid may belong to another process by now: the parent signals only children it still has
    assert gone.poll() == 1 and not parent.broken


def test_children_end_with_their_parent(probe_dir):
    from servers import wait_until

    own = prefork.PreforkParent()  # not the shared one: this test closes it
    try:
        log = probe_dir / "orphan.log"
        child = own.spawn("probe_mod", ["wait"], {**prefork.SESSION_ENV}, probe_dir, log)
        wait_until(lambda: log.exists() and log.read_text().count("\n") >= 2, 30, "the probe to start")
        assert prefork._running(child.pid)
    finally:
        own.close()
    wait_until(lambda: not prefork._running(child.pid), 30, "the child to end with its parent")
