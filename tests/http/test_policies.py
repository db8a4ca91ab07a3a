"""RunPod job policies and ``/retry`` on the real server: ``executionTimeout`` ends a long job TIMED_OUT, ``ttl``
forgets a job, ``/retry`` runs a failed job again under the same id; the envelope is checked before anything is
queued (the webhook guard at its defaults included)."""

from __future__ import annotations

import pytest

from fixture_voices import encoded
from servers import Server, wait_until


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("policies")
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "LOG_DIR": str(root / "logs"), "VOLUME_ROOT": str(root / "vol"), "VOICES_DIR": str(root / "voices"),
                  "MAX_CHUNKS": "1000", "JOB_TIMEOUT_S": "120"}, root)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


SHORT = {"transcript": "Short and sweet.", "max_new_tokens": 20, "seed": 2, "format": "pcm"}
#: Hundreds of one-word chunks, each generated in turn: far longer than five seconds even on a fast machine.
LONG = {"transcript": " ".join(f"word{i}" for i in range(600)), "chunk_method": "word", "chunk_max_word_num": 1,
        "max_new_tokens": 200, "seed": 9, "format": "pcm"}


def status(http, job_id: str) -> dict:
    return http.get(f"/status/{job_id}").json()


def test_ttl_forgets_a_finished_job(http):
    kept = http.post("/run", json={"input": SHORT, "policy": {"ttl": 10_000}}).json()  # the shortest ttl allowed
    plain = http.post("/run", json={"input": SHORT}).json()
    wait_until(lambda: status(http, kept["id"]).get("status") == "COMPLETED", 10, "the job to complete")
    wait_until(lambda: http.get(f"/status/{kept['id']}").status_code == 404, 30, "the ttl to pass")
    assert status(http, plain["id"])["status"] == "COMPLETED"  # no ttl: kept for JOB_RETENTION_S


def test_execution_timeout_ends_a_long_job(http):
    long = http.post("/run", json={"input": LONG, "policy": {"executionTimeout": 5000}}).json()
    timed_out = wait_until(lambda: (s := status(http, long["id"]))["status"] == "TIMED_OUT" and s, 60,
                           "the long job to time out")
    assert timed_out["error"] == "job ran past its 5 s limit (policy.executionTimeout)"
    assert 5000 <= timed_out["executionTime"] < 30_000


def test_retry_runs_a_failed_job_again_under_the_same_id(http):
    job = {**SHORT, "ref_audio": "latecomer"}
    first = http.post("/runsync", json={"input": job}).json()
    assert first["status"] == "FAILED" and "unknown voice 'latecomer'" in first["error"]
    retried_before = http.get("/health").json()["jobs"]["retried"]
    upload = http.post("/v1/audio/voices", files={"audio": ("v.wav", encoded("wav", 1.5), "audio/wav")},
                       data={"transcript": "A voice that came late.", "name": "latecomer"})
    assert upload.status_code == 201, upload.text
    again = http.post(f"/retry/{first['id']}")
    assert again.status_code == 200 and again.json() == {"id": first["id"], "status": "IN_QUEUE"}
    done = wait_until(lambda: (s := status(http, first["id"]))["status"] == "COMPLETED" and s, 60, "the retried job")
    assert done["output"]["audio_base64"] and "error" not in done
    assert http.get("/health").json()["jobs"]["retried"] == retried_before + 1

    completed = http.post(f"/retry/{first['id']}")
    assert completed.status_code == 409 and "is COMPLETED" in completed.json()["error"]["message"]
    refused = http.post("/run", json={"input": {"transcript": ""}}).json()
    assert http.post(f"/retry/{refused['id']}").status_code == 409  # refused at submission: no input kept
    assert http.post("/retry/local-no-such-job").status_code == 404


def test_a_timed_out_job_may_be_retried(http):
    long = http.post("/run", json={"input": LONG, "policy": {"executionTimeout": 5000}}).json()
    wait_until(lambda: status(http, long["id"])["status"] == "TIMED_OUT", 60, "the time-out")
    assert http.post(f"/retry/{long['id']}").json()["status"] == "IN_QUEUE"
    wait_until(lambda: status(http, long["id"])["status"] == "IN_PROGRESS", 30, "the second run")
    assert http.post(f"/cancel/{long['id']}").json()["status"] == "CANCELLED"


@pytest.mark.parametrize(("envelope", "message"), [
    ({"policy": {"executionTimeout": 200_000}}, "policy.executionTimeout: is 200000 ms; the most is 120000 ms "
                                                "(JOB_TIMEOUT_S)"),
    ({"policy": {"executionTimeout": 1000}}, "policy.executionTimeout: Input should be greater than or equal to 5000"),
    ({"policy": {"ttl": 5000}}, "policy.ttl: Input should be greater than or equal to 10000"),
    ({"policy": {"ttl": 700_000_000}}, "policy.ttl: Input should be less than or equal to 604800000"),
    ({"policy": {"lowPriority": True}}, "policy.lowPriority: unknown field"),
    ({"webhook": "http://127.0.0.1:9/done"}, "webhook: must be an https (WEBHOOK_ALLOW_HTTP allows http) URL"),
    ({"webhook": "https://127.0.0.1:9/done"}, "webhook: host '127.0.0.1' resolves to a loopback address; refused"),
    ({"webhook": "https://10.0.0.1/done"}, "webhook: host '10.0.0.1' resolves to a private or non-public address"),
])
def test_a_bad_envelope_is_refused_before_anything_is_queued(http, envelope, message):
    before = http.get("/health").json()["jobs"]
    answer = http.post("/run", json={"input": SHORT, **envelope})
    assert answer.status_code == 400 and answer.json()["error"]["message"].startswith(message), answer.text
    sync = http.post("/runsync", json={"input": SHORT, **envelope})
    assert sync.status_code == 400
    after = http.get("/health").json()["jobs"]
    assert after["inQueue"] == before["inQueue"] and after["completed"] == before["completed"]


def test_jobs_belong_to_the_key_that_made_them(service):
    """Any key could cancel, read or purge another key's jobs. Now another key gets 404 and purges only its own,
    unless API_KEYS_SHARE_JOBS says the keys are one tenant."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from higgs_worker.http import create_app

    settings = service.settings
    settings.api_keys, settings.max_batch_size = SecretStr("key-a-0001,key-b-0002"), 1  # one job runs at a time
    settings.max_chunks = 1000  # as the server above: LONG's one-word chunks
    a, b = {"Authorization": "Bearer key-a-0001"}, {"Authorization": "Bearer key-b-0002"}
    app = create_app(settings, service)
    with TestClient(app) as client:
        def state(job, key=a):
            return client.get(f"/status/{job['id']}", headers=key).json()["status"]

        running = client.post("/run", json={"input": LONG}, headers=a).json()
        try:
            wait_until(lambda: state(running) == "IN_PROGRESS", 30, "the long job to start")
            queued = client.post("/run", json={"input": SHORT}, headers=a).json()
            refused = client.post("/run", json={"input": {"transcript": ""}}, headers=a).json()
            assert state(queued) == "IN_QUEUE" and state(refused) == "FAILED"
            for job in (running, queued, refused):
                for method, path in (("GET", "/status"), ("GET", "/stream"), ("POST", "/cancel"), ("POST", "/retry")):
                    answer = client.request(method, f"{path}/{job['id']}", headers=b)
                    assert answer.status_code == 404 and job["id"] in answer.json()["error"]["message"], answer.text
            assert state(running) == "IN_PROGRESS" and state(queued) == "IN_QUEUE"  # b's cancels did nothing
            assert client.post("/purge-queue", headers=b).json()["removed"] == 0 and state(queued) == "IN_QUEUE"
            assert client.post("/purge-queue", headers=a).json()["removed"] == 1 and state(queued) == "CANCELLED"
            assert client.post(f"/cancel/{running['id']}", headers=a).json()["status"] == "CANCELLED"
        finally:  # never leave the long job to run out its 600 chunks at shutdown
            app.state.jobs.purge_queue()
            app.state.jobs.cancel(running["id"])
    settings.api_keys_share_jobs = True
    with TestClient(create_app(settings, service)) as client:
        job = client.post("/run", json={"input": {"transcript": ""}}, headers=a).json()
        assert client.get(f"/status/{job['id']}", headers=b).json()["error"] == job["error"]  # one tenant
