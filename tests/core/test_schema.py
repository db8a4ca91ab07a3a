import pytest

from higgs_worker.core.errors import RequestError
from higgs_worker.core.schema import SpeechRequest


def parse(**body):
    return SpeechRequest.parse(body)


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"transcript": "   "}, "transcript", "empty"),
        ({"transcript": "hi", "temperature": -0.1}, "temperature", "greater than or equal to 0"),
        ({"transcript": "hi", "top_p": 0}, "top_p", "greater than 0"),
        ({"transcript": "hi", "top_p": 1.5}, "top_p", "less than or equal to 1"),
        ({"transcript": "hi", "format": "ogg"}, "format", "wav"),
        ({"transcript": "hi", "bogus": 1}, "bogus", "unknown field"),
        ({"transcript": "hi", "ref_audio": "!!notbase64!!" * 10}, "ref_text", "required"),
        ({"transcript": "hi", "max_new_tokens": 10**6}, "max_new_tokens", "MAX_NEW_TOKENS_LIMIT"),
        ({}, "transcript", "required"),
    ],
)
def test_bad_input_names_the_field(env, body, field, needle):
    with pytest.raises(RequestError) as err:
        SpeechRequest.parse(body)
    assert err.value.field == field
    assert needle.lower() in err.value.message.lower()


def test_text_over_the_limit_names_field_and_limit(env):
    env(MAX_TEXT_CHARS="50")
    with pytest.raises(RequestError) as err:
        parse(transcript="x" * 51)
    assert err.value.field == "transcript"
    assert "50" in err.value.message and "MAX_TEXT_CHARS" in err.value.message


def test_text_alias_and_defaults(env):
    req = parse(text="Hello")
    assert req.transcript == "Hello"
    assert (req.temperature, req.top_p, req.top_k, req.format) == (0.3, 0.95, 50, "wav")
    with pytest.raises(RequestError) as err:
        parse(text="a", transcript="b")
    assert "transcript" in str(err.value)


def test_voice_names_versus_base64(env):
    assert parse(transcript="hi", ref_audio="alto, stereo_hall").voice_names == ["alto", "stereo_hall"]
    req = parse(transcript="hi", ref_audio="UklGRi" + "A" * 100, ref_text="words")
    assert req.voice_names == []


def test_not_an_object():
    with pytest.raises(RequestError) as err:
        SpeechRequest.parse(["transcript"])
    assert err.value.field == "input"


@pytest.mark.parametrize("transcript", ["\x00\x00\x00", "\u200b \u200c\ufeff", "\x07\x1b\n\t"])
def test_a_transcript_with_nothing_to_speak_names_the_field(transcript):
    with pytest.raises(RequestError) as err:
        parse(transcript=transcript)
    assert err.value.field == "transcript" and "nothing to speak" in err.value.message


def test_scene_and_reference_transcript_lose_invisible_characters():
    req = parse(transcript="hi", scene_prompt="A quiet\x00 room\u200b.", ref_audio="alto", ref_text="ignored\x07")
    assert req.scene_prompt == "A quiet room."


def test_speaker_descriptions_one_string_or_per_speaker(env):
    assert parse(transcript="hi", speaker_descriptions="a calm  old\x00 man").speaker_descriptions == {
        "SPEAKER0": "a calm old man"}
    got = parse(transcript="hi", speaker_descriptions={"SPEAKER1": "deep", "SPEAKER0": "warm"})
    assert got.speaker_descriptions == {"SPEAKER1": "deep", "SPEAKER0": "warm"}


@pytest.mark.parametrize(("value", "needle"), [({"speaker0": "x"}, "SPEAKER0 to SPEAKER7"),
                                               ({"SPEAKER8": "x"}, "MAX_SPEAKERS"),
                                               ({"SPEAKER0": " \u200b "}, "non-empty"),
                                               ({"SPEAKER0": "x" * 5000}, "MAX_SCENE_CHARS"),
                                               ([], "description string")])
def test_bad_speaker_descriptions_name_the_field(env, value, needle):
    with pytest.raises(RequestError) as err:
        parse(transcript="hi", speaker_descriptions=value)
    assert err.value.field == "speaker_descriptions" and needle in err.value.message


def test_absent_scene_is_default_and_empty_scene_is_none(env):
    assert parse(transcript="hi").scene_prompt is None
    assert parse(transcript="hi", scene_prompt="").scene_prompt == ""
    from higgs_worker.core.openai_schema import OpenAISpeech

    body = {"model": "tts-1", "input": "hi", "voice": "default"}
    assert OpenAISpeech(**body, instructions="").to_request().scene_prompt == ""
    assert OpenAISpeech(**body).to_request().scene_prompt is None


def test_voice_names_are_matched_whole(env):
    from higgs_worker.core.schema import VOICE_NAME, is_voice_names

    assert VOICE_NAME.fullmatch("tenor") and VOICE_NAME.fullmatch("tenor\n") is None
    assert is_voice_names("alto, tenor") and not is_voice_names("alto, te nor") and not is_voice_names("a/b")


@pytest.mark.parametrize(("ref_audio", "descriptions", "clash"), [
    ("alto", "warm", "SPEAKER0"),  # one string describes SPEAKER0, who already has a voice
    ("alto,tenor", {"SPEAKER1": "deep"}, "SPEAKER1"),
    ("alto,tenor", {"SPEAKER0": "warm", "SPEAKER1": "deep"}, "SPEAKER0, SPEAKER1"),
])
def test_a_voice_and_a_description_for_one_speaker_name_both_fields(env, ref_audio, descriptions, clash):
    with pytest.raises(RequestError) as err:
        parse(transcript="hi", ref_audio=ref_audio, speaker_descriptions=descriptions)
    assert err.value.field == "speaker_descriptions"
    assert clash in err.value.message and "`ref_audio`" in err.value.message


def test_voices_and_descriptions_for_different_speakers_go_together(env):
    got = parse(transcript="hi", ref_audio="alto", speaker_descriptions={"SPEAKER1": "deep"})
    assert got.ref_audio == "alto" and got.speaker_descriptions == {"SPEAKER1": "deep"}


# -- every text field: valid Unicode only; the reference transcript cleaned and bounded like the others ------------

B64 = "UklGRi" + "A" * 100  # base64-looking audio: enough for the schema, which does not decode it
SURROGATE = "\ud800"  # what JSON's "\ud800" decodes to: a lone UTF-16 surrogate, not encodable as UTF-8


@pytest.mark.parametrize(("body", "field"), [
    ({"transcript": f"hi {SURROGATE} there"}, "transcript"),
    ({"text": f"hi {SURROGATE}"}, "transcript"),
    ({"transcript": "hi", "scene_prompt": f"a room{SURROGATE}"}, "scene_prompt"),
    ({"transcript": "hi", "ref_audio": B64, "ref_text": f"words{SURROGATE}"}, "ref_text"),
    ({"transcript": "hi", "ref_audio": "alto", "ref_text": "\udfff"}, "ref_text"),
    ({"transcript": "hi", "speaker_descriptions": f"warm{SURROGATE}"}, "speaker_descriptions"),
    ({"transcript": "hi", "speaker_descriptions": {"SPEAKER0": "\udc80"}}, "speaker_descriptions"),
    ({"transcript": "hi", "speaker_descriptions": {f"SPEAKER0{SURROGATE}": "warm"}}, "speaker_descriptions"),
    ({"transcript": "hi", "save_voice": f"v{SURROGATE}"}, "save_voice"),
    ({"transcript": "hi", f"bogus{SURROGATE}": 1}, "input"),
])
def test_a_lone_surrogate_in_any_field_is_refused_naming_it(env, body, field):
    with pytest.raises(RequestError) as err:
        SpeechRequest.parse(body)
    assert err.value.field == field and "lone UTF-16 surrogate" in err.value.message
    str(err.value).encode("utf-8")  # the error itself never quotes the surrogate back (it could not be sent)


def test_a_lone_surrogate_in_a_job_or_an_openai_body_is_refused_naming_the_field(env):
    from pydantic import ValidationError

    from higgs_worker.core.openai_schema import OpenAISpeech
    from higgs_worker.jobs.request import JobRequest

    with pytest.raises(RequestError) as err:
        JobRequest.parse({"transcript": "hi", "s3_key": f"a{SURROGATE}.wav"})
    assert err.value.field == "s3_key" and "surrogate" in err.value.message
    for field, body in [("input", {"input": f"hi{SURROGATE}"}), ("instructions", {"instructions": SURROGATE}),
                        ("voice", {"voice": {SURROGATE: "x"}}), ("voice", {"voice": {"id": SURROGATE}}),
                        ("ref_text", {"voice": "default", "ref_audio": B64, "ref_text": SURROGATE})]:
        with pytest.raises(ValidationError) as verr:
            OpenAISpeech.model_validate({"model": "tts-1", "voice": "default", "input": "hi", **body})
        first = verr.value.errors()[0]
        assert first["loc"] == (field,) and "surrogate" in first["msg"], (field, first)
    with pytest.raises(ValidationError) as verr:
        OpenAISpeech.model_validate({"model": "tts-1", "voice": "default", "input": "hi", f"x{SURROGATE}": 1})
    assert verr.value.errors()[0]["loc"] == () and "field name" in verr.value.errors()[0]["msg"]
    str(verr.value.errors()[0]["msg"]).encode("utf-8")


@pytest.mark.parametrize("junk", ["\u3164", "\u2800\u2800", "\U000e0041\U000e0042\U000e007f", "\u3164 \u2800\ufe0f",
                                  "\x1b[31m\x1b[0m", "\u115f\u1160\uffa0\u034f"])
def test_a_transcript_of_blank_looking_or_tag_characters_has_nothing_to_speak(env, junk):
    with pytest.raises(RequestError) as err:
        parse(transcript=junk)
    assert err.value.field == "transcript" and "nothing to speak" in err.value.message


def test_the_reference_transcript_is_cleaned(env):
    req = parse(transcript="hi", ref_audio=B64, ref_text="  Hel\x00lo\u202e wor\u200bld\x1b[31m, in red\x1b[0m.\ufeff ")
    assert req.ref_text == "Hello world, in red."
    from higgs_worker.core.openai_schema import OpenAISpeech

    body = {"model": "tts-1", "voice": "default", "input": "hi", "ref_audio": B64, "ref_text": "a\u2066b\x07c"}
    assert OpenAISpeech(**body).to_request().ref_text == "abc"


@pytest.mark.parametrize("junk", ["\x00\u202e\u200b", "\u3164\u2800", "\U000e0041", "\x1b[2J"])
def test_a_reference_transcript_with_nothing_in_it_is_refused_naming_it(env, junk):
    with pytest.raises(RequestError) as err:
        parse(transcript="hi", ref_audio=B64, ref_text=junk)
    assert err.value.field == "ref_text" and "nothing to say" in err.value.message
    assert parse(transcript="hi", ref_audio="alto", ref_text="  ").ref_text is None  # blank: absent, as before


def test_the_reference_transcript_has_its_own_length_limit(env):
    env(MAX_REF_TEXT_CHARS="20", MAX_SCENE_CHARS="1000")
    assert parse(transcript="hi", ref_audio=B64, ref_text="x" * 20).ref_text == "x" * 20
    for body in ({"ref_audio": B64}, {"ref_audio": "alto"}):
        with pytest.raises(RequestError) as err:
            parse(transcript="hi", ref_text="x" * 21, **body)
        assert err.value.field == "ref_text" and err.value.message == "is 21 characters; the limit is 20 (MAX_REF_TEXT_CHARS)"
    from higgs_worker.core.openai_schema import OpenAISpeech
    from higgs_worker.jobs.request import JobRequest

    with pytest.raises(RequestError, match="MAX_REF_TEXT_CHARS"):
        JobRequest.parse({"transcript": "hi", "ref_audio": B64, "ref_text": "\u200b" * 21})  # counted before cleaning
    with pytest.raises(RequestError, match="MAX_REF_TEXT_CHARS") as err:
        OpenAISpeech(model="tts-1", voice="default", input="hi", ref_audio=B64, ref_text="y" * 21).to_request()
    assert err.value.field == "ref_text"


@pytest.mark.parametrize(("body", "field", "meant"), [
    ({"input": "hi"}, "input", "`transcript`"),
    ({"transcript": "hi", "response_format": "mp3"}, "response_format", "`format`"),
    ({"transcript": "hi", "voice": "alto"}, "voice", "`ref_audio`"),
    ({"transcript": "hi", "model": "tts-1"}, "model", "/v1/audio/speech"),
])
def test_openai_names_sent_to_the_workers_schema_say_what_was_meant(env, body, field, meant):
    from higgs_worker.jobs.request import JobRequest

    with pytest.raises(RequestError) as err:
        JobRequest.parse(body)
    assert err.value.field == field and meant in err.value.message and "OpenAI" in err.value.message
