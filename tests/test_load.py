"""A small load run in CI: mixed traffic, zero lost jobs, every success decodes, the server still answers."""

import json
import subprocess
import sys

from conftest import REPO


def test_small_load_run_loses_nothing(tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, "-m", "bench.load", "--clients", "3", "--duration", "10", "--json",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text())
    assert proc.returncode == 0, result
    assert result["lost_jobs"] == 0 and result["client_errors"] == 0 and result["server_alive"]
    assert result["requests"] > 20 and set(result["by_kind"]) >= {"whole", "stream", "sse", "job", "cancel", "bad"}
