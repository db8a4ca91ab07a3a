"""A small load run in CI: mixed traffic, zero lost jobs, every success decodes, the server still answers.

``bench.load`` runs in this process; the server it starts is a process of its own, as in a real load run.
"""

import json

from bench.load import main


def test_small_load_run_loses_nothing(tmp_path, tiny_model_dir):
    out = tmp_path / "load.json"
    code = main(["--clients", "3", "--duration", "6", "--json", str(out), "--model", str(tiny_model_dir)])
    result = json.loads(out.read_text())
    assert code == 0, result
    assert result["lost_jobs"] == 0 and result["client_errors"] == 0 and result["server_alive"]
    assert result["requests"] > 20 and set(result["by_kind"]) >= {"whole", "stream", "sse", "job", "cancel", "bad"}


def test_small_abuse_run_keeps_every_slot_and_job(tmp_path, tiny_model_dir):
    """Hostile references, never-read streams, junk jobs and upload races beside normal traffic."""
    out = tmp_path / "abuse.json"
    code = main(["--clients", "2", "--abuse", "2", "--duration", "8", "--json", str(out), "--model",
                 str(tiny_model_dir)])
    result = json.loads(out.read_text())
    assert result["lost_jobs"] == 0 and result["client_errors"] == 0, result["first_errors"]
    assert result["slot_availability"] >= 0.9 and result["server_alive"]
    assert {"hostile_ref", "stall", "junk_job"} <= set(result["by_kind"])
    assert code in (0, 1)  # 1 only for memory growth on a busy machine; the books above must hold
