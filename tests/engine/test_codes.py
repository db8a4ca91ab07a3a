import pytest
import torch

from higgs_worker.engine.codes import chunk_end, end_column, generated_codes, revert_delay, with_delay
from higgs_worker.engine.streaming import DelayReverter


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
    assert got.shape == (15 - 1 - 8, 8)  # complete frames but the last, which upstream drops ([:, 1:-1])
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
    assert generated_codes(generated).tolist() == [[1, 2, 3], [4, 5, 6]]  # ends at column 3 + 2 - 0
    # cut short before that column: the complete frames but the last one made, as upstream keeps [:, 1:-1]
    assert generated_codes(generated[:5]).tolist() == [[1, 2, 3]]
    assert generated_codes(generated[:4]).tolist() == []
    own = torch.tensor([[10, 10, 10], [1, 10, 10], [4, 2, 10], [11, 5, 3], [11, 11, 6], [11, 11, 11], [0, 0, 0]])
    assert generated_codes(own, bos=10, eos=11).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_stray_stream_tokens_are_clipped_into_the_codebook():
    generated = torch.tensor([[B, B, B], [B, B, B], [4, B, B], [E, 5, B], [E, E, 6], [E, E, E]])
    assert generated_codes(generated).tolist() == [[1023, 1023, 1023], [4, 5, 6]]
    own = torch.tensor([[10, 10, 10], [10, 10, 10], [0, 10, 10], [11, 5, 10], [11, 11, 6], [11, 11, 11]])
    assert generated_codes(own, bos=10, eos=11).tolist() == [[9, 9, 9], [0, 5, 6]]


def test_codes_below_the_codebook_are_clipped_to_zero():
    # the processor clips to [0, bos - 1] on both sides (``clip(0, audio_stream_bos_id - 1)``)
    generated = torch.tensor([[B, B, B], [-3, B, B], [4, -1, B], [E, 5, 3], [E, E, 6], [E, E, E]])
    assert generated_codes(generated).tolist() == [[0, 0, 3], [4, 5, 6]]


# -- the end of a chunk, as upstream finds it (modeling_higgs_audio.py's delay countdown; generation.py's [:, 1:-1])


def upstream_codes(columns: torch.Tensor, eos: int = E) -> torch.Tensor:
    """Upstream's rule written out independently: the first column t with an EOS in any codebook, e the lowest
    such codebook, the audio's last column t + (K - 1) - e (or the last made); revert every column up to it, clip,
    and drop the first and last plain frame."""
    k = columns.shape[1]
    hits = [(t, c) for t in range(columns.shape[0]) for c in range(k) if int(columns[t, c]) == eos]
    last = columns.shape[0] - 1 if not hits else min(hits[0][0] + k - 1 - hits[0][1], columns.shape[0] - 1)
    frames = [[int(columns[j + c, c]) for c in range(k)] for j in range(last - k + 2)]
    return torch.tensor(frames[1:-1] or [], dtype=torch.long).reshape(-1, k).clamp(0, B - 1)


def streamed(columns: torch.Tensor) -> torch.Tensor:
    reverter = DelayReverter(columns.shape[1])
    pieces = [reverter.push(c) for c in columns]
    return torch.cat(pieces + [reverter.close(truncated=not reverter.ended)])


def test_end_column_counts_down_from_the_lowest_codebook_with_the_eos():
    assert end_column(40, 0, 8) == 47  # the usual end: codebook 0 first, the others one column apart
    assert end_column(40, 3, 8) == 44
    assert end_column(40, 7, 8) == 40  # the last codebook first: that column is the last


def test_the_last_codebook_missing_its_end_code_adds_no_frame():
    codes = torch.randint(0, 1024, (12, 8), generator=torch.Generator().manual_seed(1))
    clean = with_delay(codes, 8)
    late = clean.clone()
    late[12 + 8, 7] = 777  # codebook 7 draws a code where its EOS was due, and more columns follow
    late = torch.cat([late, torch.randint(0, 1024, (3, 8), generator=torch.Generator().manual_seed(2))])
    assert chunk_end(late) == 12 + 1 + 7
    for columns in (clean, late):
        assert torch.equal(generated_codes(columns), codes)  # the all-EOS rule added a 13th, clamped frame
        assert torch.equal(generated_codes(columns), upstream_codes(columns))
        assert torch.equal(streamed(columns), codes)


@pytest.mark.parametrize("codebook", [0, 3, 7])
def test_a_stray_end_code_mid_speech_cuts_where_upstream_cuts(codebook):
    columns = torch.randint(0, 1024, (40, 8), generator=torch.Generator().manual_seed(codebook))
    columns[0] = B
    for c in range(8):
        columns[1:c + 1, c] = B  # each codebook's own delay
    columns[20, codebook] = E  # one codebook draws the EOS in the middle of speech; nothing else is forced
    assert chunk_end(columns) == 20 + 7 - codebook
    got = generated_codes(columns)
    assert got.shape == (20 + 7 - codebook - 8, 8)
    assert torch.equal(got, upstream_codes(columns))
    assert torch.equal(streamed(columns), got)


def test_a_generation_without_an_end_drops_its_last_frame_alone_and_streamed():
    columns = with_delay(torch.randint(0, 1024, (30, 8), generator=torch.Generator().manual_seed(3)), 8)[:25]
    assert chunk_end(columns) is None
    assert torch.equal(generated_codes(columns), upstream_codes(columns))
    assert generated_codes(columns).shape[0] == 25 - 9
    assert torch.equal(streamed(columns), generated_codes(columns))
