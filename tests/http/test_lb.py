"""Serving as a RunPod load-balancing endpoint: ``/ping`` on ``PORT_HEALTH`` beside the API on ``PORT``, and the
OpenAI speech route as such an endpoint's clients call it (``voice`` as a name or ``{"id": ...}``, unknown fields
refused by name in OpenAI's error shape)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest
from openai import BadRequestError, OpenAI

from fixture_voices import write_voices
from servers import Server, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
EXTRA = {"seed": 7, "max_new_tokens": 30}


@pytest.fixture(scope="module")
def lb(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("lb")
    health_port = free_port()
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "VOICES_DIR": str(write_voices(root / "voices", ["alto"])), "LOG_DIR": str(root / "logs"),
                  "VOLUME_ROOT": str(root / "vol"), "PORT_HEALTH": str(health_port)}, root)
    srv.health_url = f"http://127.0.0.1:{health_port}"

    def healthy():
        if srv.proc.poll() is not None:
            raise RuntimeError(f"server exited ({srv.proc.returncode}):\n{srv.output()[-4000:]}")
        try:
            return httpx.get(f"{srv.health_url}/ping", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, 180, "/ping on PORT_HEALTH to answer 200")
        yield srv
    finally:
        code = srv.stop()
    assert code in (0, -signal.SIGTERM), srv.output()[-3000:]  # SIGTERM ends both servers, gracefully
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{srv.health_url}/ping", timeout=2)


def test_ping_answers_on_the_health_port_and_nothing_else_does(lb):
    ping = httpx.get(f"{lb.health_url}/ping")
    assert ping.status_code == 200 and ping.json() == httpx.get(f"{lb.url}/ping").json()
    for path in ("/health", "/v1/models", "/docs", "/"):
        refused = httpx.get(f"{lb.health_url}{path}")
        assert refused.status_code == 404 and "PORT_HEALTH" in refused.json()["detail"]
    assert httpx.post(f"{lb.health_url}/run", json={"input": {"transcript": "x"}}).status_code == 404
    assert httpx.get(f"{lb.url}/health").status_code == 200  # the API stays on PORT


def test_speech_accepts_voice_as_a_name_or_an_id_object(lb):
    body = {"model": "tts-1", "input": "Balanced.", "response_format": "wav", **EXTRA}
    named = httpx.post(f"{lb.url}/v1/audio/speech", json={**body, "voice": "alto"}, timeout=120)
    by_id = httpx.post(f"{lb.url}/v1/audio/speech", json={**body, "voice": {"id": "alto"}}, timeout=120)
    assert named.status_code == by_id.status_code == 200
    assert named.content == by_id.content  # the same voice, the same seed: the same audio
    client = OpenAI(base_url=f"{lb.url}/v1", api_key="unused", max_retries=0, timeout=120)
    audio = client.audio.speech.create(model="tts-1", voice={"id": "alto"}, input="Balanced.",  # type: ignore[arg-type]
                                       response_format="wav", extra_body=EXTRA).content
    assert audio == named.content


@pytest.mark.parametrize(("body", "param", "message"), [
    ({"voice": {"id": "alto", "accent": "x"}}, "voice",
     "voice: unknown field `accent` in the voice object (it takes only `id`)"),
    ({"voice": {"name": "alto"}}, "voice", "voice: unknown field `name`"),
    ({"voice": {"id": 3}}, "voice", 'voice: an object must be {"id": "NAME"}'),
    ({"voice": {"id": "no such voice!"}}, "voice", "voice: must be a voice name"),
    ({"voice": {"id": "nobody"}}, "voice", "voice: unknown voice 'nobody'"),
    ({"voice": "alto", "volume_boost": 3}, "volume_boost", "volume_boost: unknown field"),
])
def test_bad_speech_bodies_are_refused_by_name_in_openai_shape(lb, body, param, message):
    client = OpenAI(base_url=f"{lb.url}/v1", api_key="unused", max_retries=0, timeout=120)
    voice = body.pop("voice")
    with pytest.raises(BadRequestError) as info:
        client.audio.speech.create(model="tts-1", voice=voice, input="Refused.", extra_body=body)  # type: ignore[arg-type]
    error = info.value.body if isinstance(info.value.body, dict) and "message" in info.value.body else \
        info.value.response.json()["error"]
    assert error["param"] == param and error["message"].startswith(message), error
    assert error["type"] == "invalid_request_error"


def test_load_balancer_template_serves_speech_and_pings_the_health_port():
    template = json.loads((REPO / "deploy/runpod-lb-endpoint.json").read_text())
    env = template["env"]
    assert template["type"] == "LB" and env["MODE"] == "http"  # bootstrap.sh starts `higgs-worker serve`
    assert env["PORT"] != env["PORT_HEALTH"]
    assert set(template["ports"].split(",")) == {f"{env['PORT']}/http", f"{env['PORT_HEALTH']}/http"}  # exposed
    assert template["imageName"] == "ghcr.io/OWNER/higgs-audio-runpod:TAG"  # as in the queue template
    assert env["VOLUME_ROOT"] == "/runpod-volume" and template["volumeMountPath"] == "/runpod-volume"
    assert env["API_KEYS"].startswith("{{ RUNPOD_SECRET_")  # the route is public: keys come from secrets
    from higgs_worker.core.settings import Settings

    names = {name.upper() for name in Settings.model_fields} | {"MODE", "RUNPOD_INIT_TIMEOUT", "MODEL_PATH",
                                                                 "TOKENIZER_PATH", "AWS_ACCESS_KEY_ID",
                                                                 "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    assert set(env) <= names, set(env) - names  # every variable is one the worker reads
