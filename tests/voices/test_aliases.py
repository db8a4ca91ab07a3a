"""OpenAI's voice names as aliases of library voices: the default mapping, ``VOICE_ALIASES``, and resolution."""

from __future__ import annotations

import pytest

from higgs_worker.core.errors import RequestError
from higgs_worker.core.schema import SpeechRequest
from higgs_worker.voices import VoiceLibrary
from higgs_worker.voices.aliases import DEFAULT_ALIASES, OPENAI_VOICES, VoiceAliases, parse_aliases
from higgs_worker.voices.presets import PRESETS


def request(voice: str) -> SpeechRequest:
    return SpeechRequest.parse({"transcript": "Hi.", "ref_audio": voice})


@pytest.fixture()
def library(env, voices_dir) -> VoiceLibrary:
    return VoiceLibrary(voices_dir, 10 * 1024 * 1024, 60.0)


def test_every_openai_voice_has_a_default_pinned_preset():
    assert set(DEFAULT_ALIASES) == set(OPENAI_VOICES)
    assert set(DEFAULT_ALIASES.values()) <= set(PRESETS)


def test_parse_overrides_and_refuses_bad_entries_naming_them():
    assert parse_aliases(" alloy=belinda, Onyx=broom_salesman ,,") == {"alloy": "belinda", "onyx": "broom_salesman"}
    assert parse_aliases("") == {}
    for bad in ("alloy", "alloy=", "=belinda", "alloy=bel inda", "al/loy=x"):
        with pytest.raises(ValueError, match="VOICE_ALIASES entry"):
            parse_aliases(bad)


def test_an_alias_resolves_to_its_voice_or_the_models_own(library):
    aliases = VoiceAliases.from_setting("ash=tenor,echo=default")
    [ref] = aliases.resolve(library, request("ash"))
    assert ref.name == "tenor"
    assert aliases.resolve(library, request("echo")) == []  # the model's own voice
    assert aliases.resolve(library, request("ALLOY")) == []  # default alias, preset not installed here
    assert [r.name for r in aliases.resolve(library, request("ash,alto"))] == ["tenor", "alto"]
    with pytest.raises(RequestError) as err:
        aliases.resolve(library, request("ash,echo"))  # the model's own voice cannot be one of several
    assert err.value.field == "ref_audio" and "'echo'" in err.value.message


def test_a_real_voice_wins_and_unknown_names_stay_refused(library):
    aliases = VoiceAliases({"tenor": "alto"})
    assert [r.name for r in aliases.resolve(library, request("tenor"))] == ["tenor"]
    with pytest.raises(RequestError) as err:
        aliases.resolve(library, request("nobody"))
    assert err.value.field == "ref_audio" and "unknown voice 'nobody'" in err.value.message


def test_an_override_naming_a_missing_voice_is_an_error_not_a_fallback(library):
    aliases = VoiceAliases.from_setting("alloy=not_installed")
    with pytest.raises(RequestError) as err:
        aliases.resolve(library, request("alloy"))
    assert err.value.field == "voice" and "not_installed" in err.value.message
    listed = {a["name"]: a for a in aliases.describe(set(library.names()))}
    assert listed["alloy"]["voice"] is None and "not_installed" in listed["alloy"]["error"]


def test_the_list_shows_each_alias_once_and_hides_one_a_real_voice_shadows(library):
    names = set(library.names())
    listed = VoiceAliases({"tenor": "alto", "ash": "tenor"}).describe(names)
    by_name = {a["name"]: a for a in listed}
    assert "tenor" not in by_name  # a real voice of that name
    assert by_name["ash"] == {"name": "ash", "kind": "alias", "voice": "tenor", "openai": True}
    assert len(listed) == len(by_name) == len(OPENAI_VOICES)
