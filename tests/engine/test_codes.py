import torch

from higgs_worker.engine.codes import generated_codes, revert_delay, with_delay


def test_with_delay_equals_the_processor(engine):
    codes = torch.randint(0, 1024, (13, 8))
    ours = with_delay(codes, 8)
    theirs = engine.processor.build_delay_pattern(
        torch.cat([torch.full((1, 8), 1024), codes, torch.full((1, 8), 1025)]).T[None])[0].T
    assert torch.equal(ours, theirs)
    assert ours.shape == (13 + 9, 8)


def test_generated_codes_round_trip():
    codes = torch.randint(0, 1024, (20, 8))
    delayed = with_delay(codes, 8)
    assert torch.equal(generated_codes(delayed), codes)
    # frames after the first all-EOS frame are ignored
    padded = torch.cat([delayed, torch.full((5, 8), 1025)])
    assert torch.equal(generated_codes(padded), codes)


def test_truncated_generation_keeps_complete_frames():
    codes = torch.randint(0, 1024, (20, 8))
    delayed = with_delay(codes, 8)[:15]  # cut before the stream ended
    got = generated_codes(delayed)
    assert got.shape == (15 - 1 - 7, 8)
    assert torch.equal(got, codes[: got.shape[0]])


def test_revert_too_short_is_empty():
    assert revert_delay(torch.zeros((3, 8), dtype=torch.long)).shape == (0, 8)


B, E = 1024, 1025


def test_with_delay_by_hand():
    codes = torch.tensor([[1, 2, 3], [4, 5, 6]])
    # codebook k lags k frames; the stream opens with BOS and closes with EOS in every codebook
    assert with_delay(codes, 3).tolist() == [[B, B, B],
                                             [1, B, B],
                                             [4, 2, B],
                                             [E, 5, 3],
                                             [E, E, 6],
                                             [E, E, E]]
    assert with_delay(codes, 3, bos=10, eos=11).tolist() == [[10, 10, 10], [1, 10, 10], [4, 2, 10], [11, 5, 3],
                                                             [11, 11, 6], [11, 11, 11]]
    assert with_delay(codes, 3).dtype == codes.dtype
    assert with_delay(codes[:0], 3).tolist() == [[B, B, B], [E, B, B], [E, E, B], [E, E, E]]


def test_revert_delay_by_hand():
    delayed = torch.tensor([[1, B, B], [4, 2, B], [E, 5, 3], [E, E, 6]])  # without the leading all-BOS frame
    assert revert_delay(delayed).tolist() == [[1, 2, 3], [4, 5, 6]]
    assert revert_delay(delayed[:3]).tolist() == [[1, 2, 3]]
    assert revert_delay(delayed[:2]).shape == (0, 3) and revert_delay(delayed[:2]).dtype == delayed.dtype


def test_generated_codes_by_hand():
    generated = torch.tensor([[B, B, B], [1, B, B], [4, 2, B], [E, 5, 3], [E, E, 6], [E, E, E], [9, 9, 9]])
    assert generated_codes(generated).tolist() == [[1, 2, 3], [4, 5, 6]]  # cut at the first all-EOS frame
    assert generated_codes(generated[:5]).tolist() == [[1, 2, 3], [4, 5, 6]]  # no EOS frame: all of it
    assert generated_codes(generated[:4]).tolist() == [[1, 2, 3]]  # cut short: complete frames only
    own = torch.tensor([[10, 10, 10], [1, 10, 10], [4, 2, 10], [11, 5, 3], [11, 11, 6], [11, 11, 11], [0, 0, 0]])
    assert generated_codes(own, bos=10, eos=11).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_stray_stream_tokens_are_clipped_into_the_codebook():
    generated = torch.tensor([[B, B, B], [E, B, B], [4, B, B], [E, 5, B], [E, E, 6], [E, E, E]])
    assert generated_codes(generated).tolist() == [[1023, 1023, 1023], [4, 5, 6]]
    own = torch.tensor([[10, 10, 10], [11, 10, 10], [0, 10, 10], [11, 5, 10], [11, 11, 6], [11, 11, 11]])
    assert generated_codes(own, bos=10, eos=11).tolist() == [[9, 9, 9], [0, 5, 6]]


def test_codes_below_the_codebook_are_clipped_to_zero():
    # the processor clips to [0, bos - 1] on both sides (``clip(0, audio_stream_bos_id - 1)``)
    generated = torch.tensor([[B, B, B], [-3, B, B], [4, -1, B], [E, 5, 3], [E, E, 6], [E, E, E]])
    assert generated_codes(generated).tolist() == [[0, 0, 3], [4, 5, 6]]
