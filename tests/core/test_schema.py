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
    from higgs_worker.core.schema import OpenAISpeech

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
