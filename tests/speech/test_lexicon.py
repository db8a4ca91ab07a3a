"""Pronunciation lexicons, the text as sent, word times in the written form, unknown tags reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from higgs_worker.asr.types import Transcript, Word
from higgs_worker.core import spoken
from higgs_worker.core.openai_schema import OpenAISpeech
from higgs_worker.core.schema import SpeechRequest
from higgs_worker.speech.lexicon import Lexicon, respell
from higgs_worker.speech.record import Record
from higgs_worker.speech.timing import timed_words


def said(text: str, entries: dict[str, str]) -> str:
    return spoken.joined(respell(spoken.pieces_of(text), entries))


def test_case_rules_and_whole_words():
    assert said("Nguyen and NGUYEN and nguyen", {"nguyen": "Win"}) == "Win and Win and Win"
    assert said("SQL, sql and MySQL", {"SQL": "sequel"}) == "sequel, sql and MySQL"
    assert said("the US and us", {"US": "you ess"}) == "the you ess and us"
    assert said("[SPEAKER0] SPEAKER0 says hi", {"SPEAKER0": "x"}) == "[SPEAKER0] x says hi"  # tags untouched
    assert said("C++ rocks", {"C++": "see plus plus"}) == "see plus plus rocks"


def test_request_entries_win_and_the_file_is_read_again_when_it_changes(tmp_path):
    path = tmp_path / "lexicon.json"
    path.write_text(json.dumps({"nguyen": "Nwin", "SQL": "ess queue ell"}), encoding="utf-8")
    lexicon = Lexicon(path)
    assert spoken.joined(lexicon.sent_text("Nguyen knows SQL", None)) == "Nwin knows ess queue ell"
    assert spoken.joined(lexicon.sent_text("Nguyen knows SQL", {"Nguyen": "Win"})) == "Win knows ess queue ell"
    path.write_text(json.dumps({"SQL": "sequel"}), encoding="utf-8")
    os.utime(path, ns=(1, 10**18))  # a new modification time, whatever the clock's resolution
    assert spoken.joined(lexicon.sent_text("Nguyen knows SQL", None)) == "Nguyen knows sequel"
    path.write_text("not json", encoding="utf-8")
    os.utime(path, ns=(1, 2 * 10**18))
    assert spoken.joined(lexicon.sent_text("Nguyen knows SQL", None)) == "Nguyen knows sequel"  # last good kept


def test_respellings_are_not_rewritten_and_normalize_text_false_keeps_numbers():
    lexicon = Lexicon(None)
    assert spoken.joined(lexicon.sent_text("R2D2 has 3 legs", {"R2D2": "artoo 2"})) == "artoo 2 has three legs"
    assert spoken.joined(lexicon.sent_text("R2D2 has 3 legs", {"R2D2": "artoo"}, False)) == "artoo has 3 legs"


def test_pronunciations_are_validated_and_pass_through_openai():
    import pytest

    from higgs_worker.core.errors import RequestError

    with pytest.raises(RequestError) as exc:
        SpeechRequest.parse({"text": "hi", "pronunciations": {"": "x"}})
    assert exc.value.field == "pronunciations" and "64" in exc.value.message
    with pytest.raises(RequestError):
        SpeechRequest.parse({"text": "hi", "pronunciations": {f"w{i}": "x" for i in range(501)}})
    request = OpenAISpeech(model="tts-1", input="hi", voice="default", pronunciations={"hi": "hey"},
                           normalize_text=False, loudness=-16).to_request()
    assert request.pronunciations == {"hi": "hey"} and request.normalize_text is False and request.loudness == -16


class HearsWhatWasSaid:
    """A recogniser that hears the text sent, word by word, one word a second (the real one on random weights
    hears noise)."""

    def __init__(self, words: list[str]) -> None:
        self.words = words

    def transcribe(self, wave, language, sample_rate=24000):
        return Transcript(" ".join(self.words), tuple(Word(w, i, i + 0.9) for i, w in enumerate(self.words)))


def test_word_times_and_captions_show_the_written_words(service):
    import numpy as np

    request = SpeechRequest.parse({"text": "Nguyen paid $23 at 3:30 pm.", "pronunciations": {"Nguyen": "Win"},
                                   "timestamps": "word", "captions": "srt"})
    normalised, _ = service.plan(request)
    assert normalised == "Win paid twenty-three dollars at three thirty p m."
    record = Record(seed=0, started=0.0)
    heard = ["Win", "paid", "twenty-three", "dollars", "at", "three", "thirty", "p", "m."]
    timed_words(HearsWhatWasSaid(heard), np.zeros(24000 * 10, np.float32), 24000, request, record)
    assert [w["word"] for w in record.words] == ["Nguyen", "paid", "$23", "at", "3:30 pm."]
    assert record.words[2] == {"word": "$23", "start": 2, "end": 3.9}
    shown = record.captions["text"]
    assert "Nguyen paid $23" in shown and "3:30 pm." in shown and "Win" not in shown and "twenty" not in shown


def test_unknown_tags_are_reported_and_known_ones_are_not(service):
    result = service.synthesize(SpeechRequest.parse({"text": "Hello [whisper] there [laugh].", "max_new_tokens": 4,
                                                     "seed": 1}))
    assert len(result.extras["warnings"]) == 1 and result.extras["warnings"][0].startswith("[whisper] is not")
    plain = service.synthesize(SpeechRequest.parse({"text": "Hello there [laugh].", "max_new_tokens": 4, "seed": 1}))
    assert "warnings" not in plain.extras


def test_prompt_command_shows_the_respelled_and_spoken_words(tmp_path, voices_dir):
    lexicon = tmp_path / "lexicon.json"
    lexicon.write_text(json.dumps({"Nguyen": "Win"}), encoding="utf-8")
    env = {"MODEL_PATH": str(tmp_path / "no-model"), "TOKENIZER_PATH": str(tmp_path / "no-tok"),
           "VOICES_DIR": str(voices_dir), "VOLUME_ROOT": str(tmp_path / "vol"), "LOG_DIR": str(tmp_path / "logs"),
           "LEXICON_PATH": str(lexicon), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "higgs_worker.cli", "prompt", "--json", "--voice", "tenor",
                           "--text", "Nguyen owes $5."], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    chunks = json.loads(proc.stdout)
    assert chunks[0]["text"] == "Win owes five dollars." and "Win owes five dollars." in chunks[0]["prompt"]
