import pytest

from higgs_worker.core import text


def test_normalize_maps_sound_events_brackets_degrees_and_adds_final_stop():
    got = text.normalize("It is 20°C (warm) [laugh] and   sunny")
    assert got == "It is 20 degrees Celsius warm <SE>[Laughter]</SE> and sunny."


def test_normalize_keeps_final_punctuation_and_drops_blank_lines():
    assert text.normalize("Hi!\n\n\n  there  now?") == "Hi!\nthere now?"
    assert text.normalize("[music start] hello [music end]") == "<SE_s>[Music]</SE_s> hello <SE_e>[Music]</SE_e>"


def test_normalize_chinese_punctuation():
    assert text.normalize("你好，世界。") == "你好, 世界."


def test_speaker_tags_sorted_by_number():
    assert text.speaker_tags("[SPEAKER1] a\n[SPEAKER0] b\n[SPEAKER10] c\n[SPEAKER1] d") == [
        "SPEAKER0", "SPEAKER1", "SPEAKER10"]


def test_split_by_speaker_one_turn_per_chunk_and_merged():
    dialogue = "[SPEAKER0] Hello.\n[SPEAKER1] Hi there.\nStill me.\n[SPEAKER0] Bye."
    assert text.split_chunks(dialogue, "speaker") == [
        "[SPEAKER0] Hello.", "[SPEAKER1] Hi there.\nStill me.", "[SPEAKER0] Bye."]
    assert text.split_chunks(dialogue, "speaker", max_turns=2) == [
        "[SPEAKER0] Hello.\n[SPEAKER1] Hi there.\nStill me.", "[SPEAKER0] Bye."]


def test_split_by_words_counts_words_per_paragraph():
    para = " ".join(f"w{i}" for i in range(25))
    chunks = text.split_chunks(para + "\n\nshort one", "word", max_words=10)
    assert [len(c.split()) for c in chunks] == [10, 10, 5, 2]
    assert chunks[2].endswith("\n\n") and chunks[3].endswith("\n\n")


ZH_CORPUS = ("北京大学是中国最有名的大学之一，每年都有很多学生来这里学习。今天天气很好，我们一起去公园散步吧！"
             "你觉得这个计划怎么样？我觉得非常好。自然语言处理是人工智能领域中的一个重要方向，它研究能实现人与计算机之间"
             "用自然语言进行有效通信的各种理论和方法。")
EN_CORPUS = ("Dr. Smith arrived at noon. The committee, which had waited since morning, was not pleased; "
             "they wanted answers, and they wanted them fast. \"Where were you?\" asked the chair. "
             "He smiled. J. R. R. Tolkien once wrote about long journeys, e.g. the one to Mordor, and this felt like one. "
             "Nobody laughed [laugh] except him.")


def test_word_method_is_upstreams_jieba_chunking_for_chinese():
    import jieba

    normalised = text.normalize(ZH_CORPUS)
    words = list(jieba.cut(normalised, cut_all=False))
    expected = ["".join(words[i:i + 7]) for i in range(0, len(words), 7)]
    expected[-1] += "\n\n"
    assert text.split_chunks(normalised, "word", max_words=7) == expected
    assert text.is_chinese(normalised) and not text.is_chinese(text.normalize(EN_CORPUS))


def _boundaries(pieces: list[str]) -> set[int]:
    out, pos = set(), 0
    for piece in pieces:
        pos += len(piece)
        out.add(pos)
    return out


@pytest.mark.parametrize("method", ["auto", "sentence"])
@pytest.mark.parametrize("budget", [4, 9, 25])
def test_chinese_chunks_fall_between_jieba_words(method, budget):
    import jieba

    normalised = text.normalize(ZH_CORPUS)
    chunks = [c.replace(" ", "") for c in text.split_chunks(normalised, method, max_words=budget)]
    dense = normalised.replace(" ", "")  # the normalised ", " after a Chinese comma is not a word
    assert "".join(chunks) == dense  # nothing lost, nothing added
    assert len(chunks) > 1
    assert _boundaries(chunks) <= _boundaries(list(jieba.cut(dense, cut_all=False)))
    assert all(text.word_count(c) <= budget for c in chunks)


@pytest.mark.parametrize("budget", [3, 8, 20, 200])
def test_sentence_packing_keeps_words_whole_and_within_budget(budget):
    normalised = text.normalize(EN_CORPUS)
    chunks = text.split_chunks(normalised, "sentence", max_words=budget)
    assert " ".join(chunks).split() == normalised.split()
    assert all(text.word_count(c) <= budget for c in chunks)
    if budget >= 20:  # every sentence fits: chunks end where sentences end
        assert all(c.endswith((".", "?", "!", '"', "</SE>")) for c in chunks), chunks


def test_sentences_respect_abbreviations_initials_and_quotes():
    sentences = text.split_sentences(text.normalize(EN_CORPUS))
    assert sentences[0] == "Dr. Smith arrived at noon."
    assert sentences[2] == '"Where were you?" asked the chair.'
    assert sentences[4].startswith("J. R. R. Tolkien once wrote") and "e.g. the one" in sentences[4]
    assert sentences[-1] == "Nobody laughed <SE>[Laughter]</SE> except him."


def test_a_long_sentence_is_cut_at_clauses_first():
    chunks = text.split_by_sentences("one two three, four five six, seven eight nine ten.", 6)
    assert chunks == ["one two three, four five six,", "seven eight nine ten."]


def test_auto_keeps_short_text_whole_and_packs_long_prose():
    assert text.split_chunks("Short text. Two sentences.", "auto", max_words=50) == ["Short text. Two sentences."]
    long_text = " ".join(f"Sentence number {i} is here." for i in range(40))
    chunks = text.split_chunks(long_text, "auto", max_words=20)
    assert len(chunks) == 10 and all(c.endswith("here.") for c in chunks)


def test_auto_splits_long_dialogue_by_turns_keeping_speaker_tags():
    turns = [f"[SPEAKER{i % 2}] " + " ".join(f"Line {i} word {j}." for j in range(4)) for i in range(6)]
    dialogue = "\n".join(turns)
    chunks = text.split_chunks(dialogue, "auto", max_words=17)
    assert chunks == turns  # 17 words a turn (the tag counts): one turn a chunk
    long_turn = "[SPEAKER1] " + " ".join(f"Part {j} of a long turn." for j in range(10))
    pieces = text.split_chunks("[SPEAKER0] Hi.\n" + long_turn, "auto", max_words=12)
    assert pieces[0] == "[SPEAKER0] Hi."
    assert len(pieces) > 2 and all(p.startswith("[SPEAKER1] ") for p in pieces[1:])
    assert all(text.word_count(p) <= 13 for p in pieces)  # the budget plus the repeated tag


def test_auto_budget_keeps_a_chunk_within_max_new_tokens():
    assert text.auto_word_budget(2048, 200) == 128
    assert text.auto_word_budget(2048, 50) == 50
    assert text.auto_word_budget(40, 200) == 8


def test_no_chunking_returns_the_text():
    assert text.split_chunks("a b c", None) == ["a b c"]


def test_invisible_characters_are_removed():
    assert text.normalize("Hel\u200blo\u00ad wor\x00ld\ufeff\u202e!") == "Hello world!"
    assert text.normalize("one\r\ntwo\rthree\tfour\x07") == "one\ntwo\nthree four."
    assert text.normalize("\x00\x00\x00") == "" and text.normalize("\u200b\u200d\u2060") == ""
    assert text.clean("a\x1bb\x9bc") == "abc"  # escape and C1 control introducers


def test_terminal_escapes_go_whole_and_blank_looking_characters_become_spaces():
    assert text.clean("a\x1b[1;31mred\x1b[0m b") == "ared b"  # no "[31m" left to be read out
    assert text.clean("x\x1b]0;title\x07y\x1b]8;;https://e.test\x1b\\z") == "xyz"  # OSC, BEL or ST ended
    assert text.clean("x\x1b]0;no end y") == "x0;no end y"  # unterminated: only the escape goes
    assert text.clean("one\u2800two\u3164three\uffa0four") == "one two three four"
    assert text.clean("flag\U000e0067\U000e0062\U000e007f \u034fok\ufe0f") == "flag ok"  # tags, selectors
    for junk in ("\u3164", "\u2800 \u2800", "\U000e0041\U000e007f", "\x1b[2J\x1b[H"):
        assert text.clean(junk).strip() == "" and text.normalize(junk) == "", repr(junk)
    for sample in ("a\x1b[31mb\u2800c\U000e0041", "x\x1b]0;t\x07\u3164y", "\x1b\x1b[[31mm"):
        assert text.clean(text.clean(sample)) == text.clean(sample)


def test_lone_surrogates_are_found_in_strings_objects_and_lists():
    assert text.has_lone_surrogate("a\ud800b") and text.has_lone_surrogate("\udfff")
    assert text.has_lone_surrogate({"k": ["x", {"y": "\udc00"}]}) and text.has_lone_surrogate({"\ud83d": 1})
    assert not text.has_lone_surrogate("a \U0001f600 pair is fine") and not text.has_lone_surrogate({"k": [1, None]})


def test_sound_events_map_exactly_as_upstream():
    got = text.normalize("[humming start] la [humming end] [sing start] la [sing end] [applause] [cheering] [cough]")
    assert got == ("<SE_s>[Humming]</SE_s> la <SE_e>[Humming]</SE_e> <SE_s>[Singing]</SE_s> la <SE_e>[Singing]</SE_e> "
                   "<SE>[Applause]</SE> <SE>[Cheering]</SE> <SE>[Cough]</SE>")
