"""Property tests: arbitrary JSON never gets past validation as anything but a named, typed error."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from higgs_worker.jobs.request import JobRequest
from higgs_worker.core.openai_schema import OpenAISpeech
from higgs_worker.core.schema import SpeechRequest
from higgs_worker.core.errors import RequestError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = list(JobRequest.model_fields) + ["text", "bogus"]
request_like = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, request_like))
def test_any_json_is_a_request_or_a_named_error(env, body):
    for schema in (SpeechRequest, JobRequest):
        try:
            req = schema.parse(body)
        except RequestError as exc:
            assert exc.field and exc.message
        else:
            assert req.transcript.strip()


openai_like = st.fixed_dictionaries(
    {"model": st.sampled_from(["tts-1", "x"]), "input": st.text(max_size=30), "voice": st.text(max_size=12)},
    optional={k: json_values for k in ("speed", "response_format", "stream_format", "seed", "temperature",
                                       "instructions", "top_k", "ref_audio", "bogus")})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=openai_like)
def test_openai_bodies_validate_or_name_the_field(env, body):
    try:
        OpenAISpeech.model_validate(body).to_request()
    except ValidationError as exc:
        assert exc.errors()[0]["loc"]
    except RequestError as exc:
        assert exc.field


@pytest.fixture(scope="module")
def app_client(tiny_model_dir):
    from fastapi.testclient import TestClient

    from higgs_worker.http import create_app
    from higgs_worker.core.settings import Settings

    settings = Settings(model_path=tiny_model_dir / "model", tokenizer_path=tiny_model_dir / "tokenizer",
                        preload_models=False, max_new_tokens_limit=8, volume_root=tiny_model_dir / "vol")
    with TestClient(create_app(settings)) as client:
        yield client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, openai_like))
def test_http_never_answers_5xx_to_bad_bodies(app_client, body):
    for path, payload in (("/v1/audio/speech", body), ("/runsync", {"input": body}), ("/run", body)):
        raw = json.dumps(payload, allow_nan=True)  # NaN and Infinity too: Python's json reads them
        response = app_client.post(path, content=raw, headers={"content-type": "application/json"})
        assert response.status_code < 500, (path, payload, response.text)
        if response.status_code >= 400:
            assert "error" in response.json()
