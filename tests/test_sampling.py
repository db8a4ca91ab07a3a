import pytest
import torch

from higgs_worker.engine.sampling import DelayState, RowSampler, choose_frames

K, V, BOS, EOS = 8, 1026, 1024, 1025


def row(temperature=1.0, top_k=50, top_p=1.0, seed=0, prompt=(5, 6, 7, 8, 9, 10, 11, 99)):
    return RowSampler(num_codebooks=K, codebook_size=V, temperature=temperature, top_k=top_k, top_p=top_p,
                      ras_win_len=0, ras_max_repeat=2, generator=torch.Generator().manual_seed(seed),
                      delay=DelayState.from_prompt(list(prompt), K, audio_bos_id=99, delay_id=98),
                      stream_bos=BOS, stream_eos=EOS)


def test_delay_pattern_from_the_prompt_tail():
    state = DelayState.from_prompt([1, 2, 3, 4, 5, 6, 7, 99], K, audio_bos_id=99, delay_id=98)
    assert state.bos.tolist() == list(range(8)) and state.eos.tolist() == list(range(1, 9))
    none = DelayState.from_prompt([1] * 8, K, audio_bos_id=99, delay_id=98)
    assert none.bos.tolist() == [0] * 8
    assert none.bos.dtype == none.eos.dtype == torch.long  # step counters


def test_delay_pattern_counters_where_the_tail_holds_the_audio_bos_or_a_delay_token():
    # counter k is (k + 1) - (tokens from that id to the end of the tail): how far into the pattern the prompt is
    state = DelayState.from_prompt([0, 1, 2, 3, 4, 99, 6, 7], K, audio_bos_id=99, delay_id=98)
    assert state.bos.tolist() == [-2, -1, 0, 1, 2, 3, 4, 5] and state.eos.tolist() == list(range(1, 9))
    state = DelayState.from_prompt([0, 1, 2, 98, 4, 5, 6, 7], K, audio_bos_id=99, delay_id=98)
    assert state.eos.tolist() == [-4, -3, -2, -1, 0, 1, 2, 3] and state.bos.tolist() == [0] * 8
    state = DelayState.from_prompt([5, 5, 5, 5, 99, 98, 1, 2, 3, 4, 5, 6, 7, 8], K, audio_bos_id=99, delay_id=98)
    assert state.bos.tolist() == [0] * 8 and state.eos.tolist() == list(range(1, 9))  # only the last K tokens count
    three = DelayState.from_prompt([7, 99, 98], 3, audio_bos_id=99, delay_id=98)
    assert three.bos.tolist() == [-1, 0, 1] and three.eos.tolist() == [0, 1, 2]


def test_codebook_k_is_forced_to_bos_for_k_plus_one_steps():
    r = row(temperature=0.0)
    for step in range(K + 1):
        logits = torch.randn(1, K * V)
        logits.view(K, V)[:, BOS] = -1e9  # a free codebook never lands on BOS by chance
        frame = choose_frames([r], logits, [False])[0]
        assert [int(frame[k]) == BOS for k in range(K)] == [k >= step for k in range(K)]


def test_eos_spreads_one_codebook_per_step_after_the_first():
    r = row(temperature=0.0)
    r.delay.bos[:] = -1
    frames = [choose_frames([r], torch.randn(1, K * V), [True])[0] for _ in range(K)]
    for step, frame in enumerate(frames):
        assert [int(frame[k]) == EOS for k in range(K)][: step + 1] == [True] * (step + 1)


def test_top_k_and_seeded_draws():
    logits = torch.randn(1, K * V)
    free = lambda r: r.delay.bos.fill_(-1)  # noqa: E731 - past the start
    a, b = row(top_k=3, seed=4), row(top_k=3, seed=4)
    free(a)
    free(b)
    fa = choose_frames([a], logits, [False])[0]
    fb = choose_frames([b], logits, [False])[0]
    assert torch.equal(fa, fb)
    top3 = torch.topk(logits.view(K, V), 3, dim=-1).indices
    assert all(int(fa[k]) in top3[k].tolist() for k in range(K))
    g = row(temperature=0.0)
    free(g)
    assert torch.equal(choose_frames([g], logits, [False])[0], logits.view(K, V).argmax(-1))


def test_rows_are_independent_in_a_batch():
    logits = torch.randn(3, K * V)
    alone = []
    for i in range(3):
        r = row(seed=i, top_p=0.9)
        r.delay.bos.fill_(-1)
        alone.append(choose_frames([r], logits[i:i + 1], [False])[0])
    rows = [row(seed=i, top_p=0.9) for i in range(3)]
    for r in rows:
        r.delay.bos.fill_(-1)
    together = choose_frames(rows, logits, [False] * 3)
    assert all(torch.equal(a, together[i]) for i, a in enumerate(alone))


# -- what the draws may be: hand-made logits, small vocabularies ---------------------------------------------------
# The order is upstream's (transformers' warpers): temperature, then top-k, then top-p, then a draw from the
# softmax of what is left; repetition-aware sampling (RAS) then redraws, from the raw logits, any codebook whose
# token already appears ``ras_max_repeat`` times in the last ``ras_win_len`` frames.

SMALL_V, CODEBOOKS = 8, 8
INF = float("inf")


def free(temperature=1.0, top_k=0, top_p=1.0, seed=0, ras_win_len=0, ras_max_repeat=2, v=SMALL_V, k=CODEBOOKS):
    """A row past the delay pattern's start and far from its end: nothing is forced."""
    return RowSampler(num_codebooks=k, codebook_size=v, temperature=temperature, top_k=top_k, top_p=top_p,
                      ras_win_len=ras_win_len, ras_max_repeat=ras_max_repeat,
                      generator=torch.Generator().manual_seed(seed),
                      delay=DelayState(bos=torch.full((k,), -1), eos=torch.full((k,), 10**6)),
                      stream_bos=v - 2, stream_eos=v - 1)


def logits_of(values, v=SMALL_V, k=CODEBOOKS):
    """The same hand-made logits on every codebook; tokens not given are impossible (-inf)."""
    one = torch.full((v,), -INF)
    one[: len(values)] = torch.tensor(values, dtype=torch.float)
    return one.repeat(k)[None]


def draws(logits, steps=4, rows=64, **settings) -> torch.Tensor:
    """Every token drawn by ``rows`` rows with these settings (seeds 0, 1, ...) over ``steps`` steps: with the
    default, 64 rows x 8 codebooks x 4 steps = 2048 draws, in a few batched calls."""
    batch = [free(seed=seed, **settings) for seed in range(rows)]
    return torch.cat([choose_frames(batch, logits.expand(rows, -1), [False] * rows).view(-1)
                      for _ in range(steps)])


def drawn(logits, **settings) -> set[int]:
    return set(draws(logits, **settings).tolist())


def test_temperature_comes_before_top_p():
    # logits 2, 1, 0: at T=1 the probabilities are .665 .245 .090, so top_p=.8 keeps {0, 1}
    logits = logits_of([2.0, 1.0, 0.0])
    assert drawn(logits, temperature=1.0, top_p=0.8) == {0, 1}
    # T=10 flattens them first (.367 .332 .301): top_p=.8 then keeps all three
    assert drawn(logits, temperature=10.0, top_p=0.8) == {0, 1, 2}
    # T=.5 sharpens them first (.867 .117 .016): top_p=.8 then keeps the first alone
    assert drawn(logits, temperature=0.5, top_p=0.8) == {0}


def test_top_k_comes_before_top_p():
    logits = logits_of(torch.tensor([0.4, 0.3, 0.2, 0.1]).log().tolist())
    assert drawn(logits, top_k=2) == {0, 1}
    assert drawn(logits, top_p=0.5) == {0, 1}  # .4 alone is under .5
    assert drawn(logits, top_p=0.75) == {0, 1, 2}
    # top-k first leaves .4 .3, renormalised .571 .429: top_p=.5 is then met by the first alone
    # (top-p first would keep {0, 1}, which top-k=2 leaves as it is)
    assert drawn(logits, top_k=2, top_p=0.5) == {0}


def test_top_k_keeps_the_k_best_and_off_means_every_token():
    logits = logits_of([3.0, 0.5, 2.0, 1.0, 2.5, 0.0])
    assert drawn(logits, temperature=3.0, top_k=1) == {0}
    assert drawn(logits, temperature=3.0, top_k=3) == {0, 2, 4}
    everything = set(range(6))
    for off in (0, SMALL_V, SMALL_V + 5):  # 0 and anything >= the vocabulary mean no top-k
        assert drawn(logits, temperature=3.0, top_k=off) == everything


def test_a_tiny_top_p_keeps_the_most_likely_token():
    logits = logits_of([0.0, 0.1, 0.05])
    assert drawn(logits, temperature=1.0, top_p=1e-6) == {1}


def test_draws_follow_the_softmax_of_the_scaled_logits():
    # logits 0 and 2 ln 3: at T=2 the odds are 1:3, at T=1 1:9
    logits = logits_of([0.0, 2 * torch.tensor(3.0).log().item()])
    for temperature, share in ((2.0, 0.75), (1.0, 0.9), (0.5, 81 / 82)):
        tokens = draws(logits, steps=8, temperature=temperature)
        assert set(tokens.tolist()) <= {0, 1}
        assert (tokens == 1).float().mean().item() == pytest.approx(share, abs=0.025), temperature


def test_draws_among_three_tokens_follow_the_softmax():
    # with two tokens a wrongly signed Gumbel noise still gives the right odds; with three it does not
    logits = logits_of(torch.tensor([0.6, 0.3, 0.1]).log().tolist())
    tokens = draws(logits, steps=8)
    shares = [(tokens == t).float().mean().item() for t in range(3)]
    assert shares == pytest.approx([0.6, 0.3, 0.1], abs=0.03)


def test_top_p_removes_a_token_whose_cumulative_share_is_exactly_the_rest():
    # four equal tokens (exactly .25 each): top_p=.75 keeps three, as transformers' `<= 1 - top_p` does
    logits = logits_of([0.0, 0.0, 0.0, 0.0])
    assert len(drawn(logits, top_p=0.75)) == 3
    assert len(drawn(logits, top_p=0.76)) == 4


def test_greedy_takes_the_argmax_of_the_logits_whatever_top_k_and_top_p():
    logits = logits_of([0.0, 1.0, 3.0, 2.0])
    assert drawn(logits, temperature=0.0, top_k=3, top_p=0.5, steps=3) == {2}


def batch_sees(settings: list[dict], logits, copies=24, steps=6) -> list[set[int]]:
    """The tokens each setting drew, in one batch where the settings alternate row by row."""
    rows = [free(seed=i, **settings[i % len(settings)]) for i in range(copies * len(settings))]
    seen: list[set[int]] = [set() for _ in settings]
    for _ in range(steps):
        frames = choose_frames(rows, logits.expand(len(rows), -1), [False] * len(rows))
        for i, frame in enumerate(frames):
            seen[i % len(settings)] |= set(frame.tolist())
    return seen


def test_each_row_of_a_batch_uses_its_own_settings():
    logits = logits_of([3.0, 2.5, 2.0, 1.5, 1.0, 0.5])
    settings = [{"top_k": 1}, {"top_k": 3}, {"top_k": 0}, {"temperature": 0.0}, {"top_k": 2, "top_p": 0.3},
                {"temperature": 4.0, "top_k": 5}]
    assert batch_sees(settings, logits) == [{0}, {0, 1, 2}, {0, 1, 2, 3, 4, 5}, {0}, {0}, {0, 1, 2, 3, 4}]
    # a row without top-p beside one with it
    half, whole = batch_sees([{"top_p": 0.5}, {"top_p": 1.0}], logits)
    assert whole == {0, 1, 2, 3, 4, 5} and half == {0, 1}


def ras_row(history, temperature=0.0, win=3, repeat=2, seed=0):
    r = free(temperature=temperature, seed=seed, ras_win_len=win, ras_max_repeat=repeat)
    r.history = [torch.tensor(frame) for frame in history]
    return r


def test_ras_redraws_a_codebook_whose_token_repeats_past_the_limit_and_leaves_the_others():
    # Greedy picks token 5 everywhere; the raw logits give it only about half the mass, beside token 3.
    logits = logits_of([-INF, -INF, -INF, 0.0, -INF, 0.1])
    # The window is the last 3 frames. Codebook 0: 5 twice in it (the limit) -> redrawn; codebook 1: once -> kept;
    # codebook 2: twice, but once before the window -> kept; codebook 3: never -> kept; 4 to 7: twice -> redrawn.
    history = [[1, 1, 5, 1, 5, 5, 5, 5],
               [5, 1, 1, 1, 5, 5, 5, 5],
               [1, 5, 1, 1, 1, 1, 1, 1],
               [5, 1, 5, 1, 5, 5, 5, 5]]
    rows = [ras_row(history, seed=seed) for seed in range(200)]
    frames = choose_frames(rows, logits.expand(200, -1), [False] * 200)
    assert set(frames.view(-1).tolist()) <= {3, 5}
    assert all(torch.equal(r.history[-1], frames[i]) for i, r in enumerate(rows))
    redrawn = (frames == 3).float().sum(0)
    assert redrawn[1:4].tolist() == [0, 0, 0]  # under the limit: never redrawn
    for k in (0, 4, 5, 6, 7):  # redrawn from softmax(0, .1): token 3 about 47.5% of the time
        assert 70 <= redrawn[k] <= 120, (k, redrawn[k])


def test_ras_redraw_uses_the_raw_logits_without_temperature_top_k_or_top_p():
    # The first draw can only be token 1 (top_k=1); the redraw is from softmax(0, 2) of the raw logits (token 0:
    # 12%), not from what temperature .25 (token 0: .03%) or top-k left.
    logits = logits_of([0.0, 2.0])
    history = [[1] * CODEBOOKS] * 2
    rows = [ras_row(history, temperature=0.25, seed=s) for s in range(100)]
    for r in rows:
        r.top_k, r.top_p = 1, 0.5
    tokens = choose_frames(rows, logits.expand(100, -1), [False] * 100)
    assert 0.06 <= (tokens == 0).float().mean().item() <= 0.19


def test_ras_redraws_come_from_the_rows_own_generator():
    logits = logits_of([-INF, -INF, -INF, 0.0, -INF, 0.1])
    history = [[5] * CODEBOOKS] * 2

    def redraws(global_seed: int) -> torch.Tensor:
        torch.manual_seed(global_seed)  # whatever else used the global generator must not matter
        rows = [ras_row(history, seed=s) for s in range(16)]
        return choose_frames(rows, logits.expand(16, -1), [False] * 16)

    first = redraws(0)
    assert (first == 3).any() and (first == 5).any()
    assert torch.equal(first, redraws(1)) and torch.equal(first, redraws(2))


def test_ras_never_counts_stream_bos_and_eos():
    # A row forced to the stream BOS (the delay pattern's start) keeps it, however often BOS fills the window.
    bos, eos = SMALL_V - 2, SMALL_V - 1
    logits = logits_of([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    for token in (bos, eos):
        rows = [ras_row([[token] * CODEBOOKS] * 3, seed=seed) for seed in range(20)]
        for r in rows:
            r.delay = DelayState(bos=torch.full((CODEBOOKS,), 5 if token == bos else -1),
                                 eos=torch.full((CODEBOOKS,), 0 if token == eos else 10**6))
        assert choose_frames(rows, logits.expand(20, -1), [False] * 20).unique().tolist() == [token]


def test_ras_sees_the_rows_own_recent_frames_and_is_off_at_window_zero():
    logits = logits_of([-INF, -INF, -INF, 0.0, -INF, 0.1])  # greedy: 5; raw: 5 or 3
    r = free(temperature=0.0, ras_win_len=4, ras_max_repeat=2)
    frames = [choose_frames([r], logits, [False])[0] for _ in range(30)]
    assert len(r.history) == 4 and all(torch.equal(h, f) for h, f in zip(r.history, frames[-4:]))  # the last 4
    tokens = torch.stack(frames)
    assert (tokens == 3).any()  # once 5 repeats twice in the last 4 frames, it is redrawn
    assert torch.equal(tokens[:2], torch.full((2, CODEBOOKS), 5))  # the first two frames cannot repeat yet
    off = free(temperature=0.0, ras_win_len=0, ras_max_repeat=2)
    off.history = [torch.full((CODEBOOKS,), 5)] * 4
    assert all(torch.equal(choose_frames([off], logits, [False])[0], torch.full((CODEBOOKS,), 5)) for _ in range(30))


def test_ras_with_a_window_of_one_redraws_a_repeat_of_the_last_frame():
    logits = logits_of([-INF, -INF, -INF, 0.0, -INF, 0.1])
    rows = [ras_row([[5] * CODEBOOKS], win=1, repeat=1, seed=s) for s in range(20)]
    frames = choose_frames(rows, logits.expand(20, -1), [False] * 20)
    assert (frames == 3).any()
    assert all(len(r.history) == 1 and torch.equal(r.history[0], frames[i]) for i, r in enumerate(rows))
