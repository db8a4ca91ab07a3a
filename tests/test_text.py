from higgs_worker import text


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


def test_split_by_words_cuts_cjk_by_characters():
    chunks = text.split_chunks("一二三四五六七八九十", "word", max_words=4)
    assert [c.strip() for c in chunks] == ["一二三四", "五六七八", "九十"]


def test_no_chunking_returns_the_text():
    assert text.split_chunks("a b c", None) == ["a b c"]


def test_invisible_characters_are_removed():
    assert text.normalize("Hel\u200blo\u00ad wor\x00ld\ufeff\u202e!") == "Hello world!"
    assert text.normalize("one\r\ntwo\rthree\tfour\x07") == "one\ntwo\nthree four."
    assert text.normalize("\x00\x00\x00") == "" and text.normalize("\u200b\u200d\u2060") == ""
    assert text.clean("a\x1bb\x9bc") == "abc"  # escape and C1 control introducers
