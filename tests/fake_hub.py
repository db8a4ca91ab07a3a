"""A small Hugging Face hub on 127.0.0.1 serving local folders as model repos, for ``HF_ENDPOINT``.

It answers what ``huggingface_hub`` asks when downloading: repo info (revision -> commit), the recursive file
tree (sizes; sha256 for ``*.safetensors``, served as LFS files), and ``/resolve/`` HEAD/GET with the headers
the client reads and HTTP ranges for resumed downloads. It counts GETs per file and can be slowed down.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlparse

from servers import LoopbackHTTPServer


class FakeHub(LoopbackHTTPServer):
    def __init__(self, repos: dict[str, Path], chunk: int = 1 << 20, delay: float = 0.0) -> None:
        self.repos = {name: Path(folder) for name, folder in repos.items()}
        self.commits = {name: hashlib.sha1(name.encode()).hexdigest() for name in repos}
        self.gets: Counter[str] = Counter()
        self.ranged: Counter[str] = Counter()
        self.chunk = chunk
        self.delay = delay
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, body, status=200):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _repo_of(self, path: str) -> tuple[str, str] | None:
                for name in hub.repos:
                    if path.startswith(name + "/"):
                        return name, path[len(name) + 1:]
                return None

            def do_GET(self):  # noqa: N802
                self._serve(head=False)

            def do_HEAD(self):  # noqa: N802
                self._serve(head=True)

            def _serve(self, head: bool):
                path = unquote(urlparse(self.path).path).lstrip("/")
                if path.startswith("api/models/"):
                    found = self._repo_of(path[len("api/models/"):])
                    if found is None:
                        return self._json({"error": "Repository not found"}, 404)
                    name, rest = found
                    if rest.startswith("revision/"):
                        return self._json({"id": name, "sha": hub.commits[name], "siblings": [
                            {"rfilename": f["path"]} for f in hub.tree(name)]})
                    if rest.startswith("tree/"):
                        return self._json(hub.tree(name))
                    return self._json({"error": "unknown api route"}, 404)
                found = self._repo_of(path)
                if found is None or "/resolve/" not in "/" + found[1]:
                    return self._json({"error": "Entry not found"}, 404)
                name, rest = found
                _, _, tail = rest.partition("resolve/")
                _, _, filename = tail.partition("/")
                file = hub.repos[name] / filename
                if not file.is_file():
                    return self._json({"error": "Entry not found"}, 404)
                data = file.read_bytes()
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0] or 0)
                status = 206 if start else 200
                self.send_response(status)
                etag = hashlib.sha256(data).hexdigest() if filename.endswith(".safetensors") else \
                    hashlib.sha1(data).hexdigest()
                self.send_header("ETag", f'"{etag}"')
                self.send_header("X-Repo-Commit", hub.commits[name])
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if head:
                    return
                with hub.lock:
                    hub.gets[f"{name}/{filename}"] += 1
                    if start:
                        hub.ranged[f"{name}/{filename}"] += 1
                try:
                    for offset in range(start, len(data), hub.chunk):
                        self.wfile.write(data[offset:offset + hub.chunk])
                        self.wfile.flush()
                        if hub.delay:
                            time.sleep(hub.delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        super().__init__(Handler)

    def tree(self, name: str) -> list[dict]:
        entries = []
        root = self.repos[name]
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = file.relative_to(root).as_posix()
            data = file.read_bytes()
            entry = {"type": "file", "path": rel, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            if rel.endswith(".safetensors"):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        return entries
