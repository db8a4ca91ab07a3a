"""Shared fixtures: the tiny model (made once per session by the real generator), settings, the voices."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from higgs_worker.core import settings as settings_module

# No test may reach the real hub: anything that forgets its own endpoint hits a closed local port instead.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# One compute thread per process (set before torch loads; servers and commands the tests start inherit it). The
# tiny model's operations are far too small to gain from a thread pool, and the suite already runs a process per
# core: with more threads, every operation waits for pool threads that another process holds off the core, which
# made CPU-bound tests several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HIGGS_SHARED_DIR", REPO.parent / "shared"))
SHARED_VOICES = SHARED / "voices"


# The files that take longest (real processes: servers, workers, load runs, a browser), longest first. Under
# ``--dist loadfile --no-loadscope-reorder`` (scripts/test.sh) workers take files in this order, so each starts on
# the long ones and the short files at the end fill the gaps: no worker is left alone with a long file while the
# other is idle. Other files keep their usual order after these. The order only affects speed, never results.
SLOW_FILES_FIRST = (
    "test_redis_store.py", "test_runpod_worker.py", "test_abuse.py", "test_load.py", "test_studio.py",
    "test_cli.py", "test_faults.py", "test_policies.py", "test_speech_check_server.py", "test_long_form.py",
    "test_fatal.py", "test_first_run.py", "test_gpu_check.py", "test_auth_routes.py", "test_text_hygiene_server.py",
    "test_http.py", "test_hostile_inputs.py", "test_deploy.py", "test_scheduler.py", "test_asr_fetch.py",
    "test_fitness.py", "test_fetch.py", "test_upstream_parity.py", "test_prompt_view.py", "test_lb.py",
    "test_webhooks.py", "test_storage.py", "test_job_progress.py",
    "test_static_step.py", "test_ssrf.py", "test_properties.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's own order is kept


def shared_voices_or_skip() -> Path:
    if not (SHARED_VOICES / "belinda.wav").exists():
        pytest.skip(f"the shared voice presets are not beside the project ({SHARED_VOICES} is absent)")
    return SHARED_VOICES


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from higgs_worker.weights.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture()
def voices_dir(tmp_path) -> Path:
    """A voice folder of fixture voices written by the tests (several rates, channel counts and sample types)."""
    from fixture_voices import write_voices

    return write_voices(tmp_path / "voices")


@pytest.fixture()
def env(monkeypatch, tiny_model_dir, tmp_path):
    """Environment pointing the worker at the tiny model; yields a setter for more variables."""
    monkeypatch.setenv("MODEL_PATH", str(tiny_model_dir / "model"))
    monkeypatch.setenv("TOKENIZER_PATH", str(tiny_model_dir / "tokenizer"))
    monkeypatch.setenv("VOLUME_ROOT", str(tmp_path / "volume"))
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("HIGGS_DEMO", raising=False)
    settings_module.reset_settings()

    def set_(**values: str) -> None:
        for k, v in values.items():
            monkeypatch.setenv(k, v)
        settings_module.reset_settings()

    yield set_
    settings_module.reset_settings()


@pytest.fixture(scope="session")
def engine(tiny_model_dir):
    from higgs_worker.engine import Engine, load_model

    return Engine(load_model(tiny_model_dir / "model", tiny_model_dir / "tokenizer", "cpu", "float32"))


@pytest.fixture()
def service(env, engine, voices_dir):
    from higgs_worker.engine import EngineHolder
    from higgs_worker.speech.service import SpeechService
    from higgs_worker.core.settings import get_settings

    env(VOICES_DIR=str(voices_dir))
    return SpeechService(get_settings(), holder=EngineHolder(lambda: engine))


def unavailable(message: str) -> None:
    """A tool a test needs is missing: skip, naming how to get it, except with ``CI=true``, which must run every
    test and so fails instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def http(server):
    """A plain HTTP client of the test module's own ``server`` fixture (the real server in a subprocess)."""
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


@pytest.fixture()
def client_for(service):
    """``make(**settings)``: a TestClient around the real app and the tiny engine, with those settings changed;
    every client made is closed after the test."""
    from fastapi.testclient import TestClient

    from higgs_worker.http import create_app

    clients = []

    def make(**overrides):
        for key, value in overrides.items():
            setattr(service.settings, key, value)
        client = TestClient(create_app(service.settings, service))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing-access-key", "AWS_SECRET_ACCESS_KEY": "testing-secret-key-5f2e",
          "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    """``moto`` serving S3 over HTTP on 127.0.0.1 (a real endpoint boto3 talks to over the network stack)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        from servers import free_port

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.running = False

    def start(self) -> None:
        self._server.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._server.stop()
            self.running = False

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"])

    def env(self) -> dict[str, str]:
        return {**S3_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def job_runner(self, service, **settings):
        """A job runner of ``service`` that stores in this server, with ``settings`` (``s3_bucket=...``) set."""
        from pydantic import SecretStr

        from higgs_worker.jobs.runner import JobRunner

        configured = service.settings
        configured.aws_endpoint_url = self.endpoint
        configured.aws_access_key_id = SecretStr(S3_ENV["AWS_ACCESS_KEY_ID"])
        configured.aws_secret_access_key = SecretStr(S3_ENV["AWS_SECRET_ACCESS_KEY"])
        for name, value in settings.items():
            setattr(configured, name, value)
        return JobRunner(service)  # its storage is made from these settings when first used


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    server.start()
    server.client().create_bucket(Bucket="audio-out")
    yield server
    server.stop()


@pytest.fixture()
def spy(service, monkeypatch):
    """Record every prompt the service hands the (real) engine: ``[prompt, seed, job or its Generation]``."""
    engine = service.engine
    calls = []
    real_start, real_finish = engine.start, engine.finish

    def start(prompt, sampling, seed, cancel=None, on_frame=None):
        job = real_start(prompt, sampling, seed, cancel, on_frame)
        calls.append([prompt, seed, job])
        return job

    def finish(job, *waiting):
        result = real_finish(job, *waiting)
        for call in calls:
            if call[2] is job:
                call[2] = result
        return result

    monkeypatch.setattr(engine, "start", start)
    monkeypatch.setattr(engine, "finish", finish)
    return calls
