"""A small fake of RunPod's job control plane on 127.0.0.1, speaking the worker loop's wire protocol.

The real ``runpod`` SDK worker polls ``/job-take/<worker>`` (or ``/job-take-batch/``) for jobs, posts results to
``/job-done/<worker>/<job>`` (progress updates go there too, as ``{"status": "IN_PROGRESS", "output": ...}``,
and are kept apart from the result) and stream pieces to ``/job-stream/<worker>/<job>``, and long-polls
``/job-stop/<worker>`` for cancellations. This server hands out queued jobs and records what comes back.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from servers import LoopbackHTTPServer


class FakeRunPod(LoopbackHTTPServer):
    def __init__(self) -> None:
        self.queue: deque[dict[str, Any]] = deque()
        self.results: dict[str, dict[str, Any]] = {}
        self.streams: dict[str, list[dict[str, Any]]] = {}
        self.progress: dict[str, list[Any]] = {}  # each job's progress updates, in arrival order
        self.posts: list[tuple[str, str]] = []  # (job id, "progress" | "result" | "stream"), in arrival order
        self.taken: list[str] = []
        self.stops: list[str] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                query = parse_qs(url.query)
                if parts[0] == "job-take":
                    with fake.lock:
                        job = fake.queue.popleft() if fake.queue else None
                        if job:
                            fake.taken.append(job["id"])
                    return self._reply(200, job) if job else self._reply(204)
                if parts[0] == "job-take-batch":
                    n = int(query.get("batch_size", ["1"])[0])
                    with fake.lock:
                        jobs = [fake.queue.popleft() for _ in range(min(n, len(fake.queue)))]
                        fake.taken.extend(j["id"] for j in jobs)
                    return self._reply(200, jobs) if jobs else self._reply(204)
                if parts[0] == "job-stop":
                    with fake.lock:
                        stops, fake.stops = fake.stops, []
                    return self._reply(200, {"jobsToStop": stops}) if stops else self._reply(204)
                return self._reply(404, {"error": "unknown route"})

            def do_POST(self):  # noqa: N802
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                job_id = parts[-1]
                with fake.changed:
                    if parts[0] == "job-done" and isinstance(body, dict) and body.get("status") == "IN_PROGRESS":
                        fake.progress.setdefault(job_id, []).append(body.get("output"))
                        fake.posts.append((job_id, "progress"))
                    elif parts[0] == "job-done":
                        fake.results[job_id] = body
                        fake.posts.append((job_id, "result"))
                    elif parts[0] == "job-stream":
                        fake.streams.setdefault(job_id, []).append(body)
                        fake.posts.append((job_id, "stream"))
                    fake.changed.notify_all()
                return self._reply(200, {})

        super().__init__(Handler)

    def add_job(self, job_id: str, job_input: Any) -> None:
        with self.lock:
            self.queue.append({"id": job_id, "input": job_input})

    def stop(self, job_id: str) -> None:
        with self.lock:
            self.stops.append(job_id)

    def wait_results(self, job_ids: list[str], timeout: float = 240.0) -> dict[str, dict[str, Any]]:
        with self.changed:
            ok = self.changed.wait_for(lambda: all(j in self.results for j in job_ids), timeout)
            if not ok:
                missing = [j for j in job_ids if j not in self.results]
                raise TimeoutError(f"no result for {missing}")
            return {j: self.results[j] for j in job_ids}

    def worker_env(self, worker_id: str = "worker-1") -> dict[str, str]:
        """The environment the RunPod platform gives a worker, pointed at this fake."""
        return {
            "RUNPOD_WEBHOOK_GET_JOB": f"{self.url}/job-take/$ID?gpu=test",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{self.url}/job-done/$RUNPOD_POD_ID/$ID?gpu=test",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{self.url}/job-stream/$RUNPOD_POD_ID/$ID?gpu=test",
            "RUNPOD_POD_ID": worker_id,
            # never let the SDK's fitness checks probe the network (8.8.8.8) or look for a GPU in tests
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
        }


def unfit_worker_exit_code(env: dict[str, str], cwd: Path, timeout: float) -> int:
    """``higgs-worker handler`` (``env`` over the session's environment) with one job waiting on a fake control
    plane: a worker whose fitness checks fail must end without taking it. Asserts that no job was taken and no
    result posted; returns the worker's exit code."""
    from servers import runpod_worker

    with FakeRunPod() as plane:
        plane.add_job("job-never", {"transcript": "Nobody should take this.", "max_new_tokens": 8})
        proc = runpod_worker({**env, **plane.worker_env()}, cwd)
        try:
            code = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert plane.taken == [] and plane.results == {}
    return code
