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
