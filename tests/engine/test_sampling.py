import pytest
import torch

from higgs_worker.engine.sampling import (
    CANDIDATE_BUCKETS,
    RAS_MAX_WINDOW,
    DelayState,
    RowSettings,
    SlotState,
    choose_frames,
    counter_uniform,
)

K, V, BOS, EOS = 8, 1026, 1024, 1025


@pytest.fixture(autouse=True, params=["branch-free", "host-branches"])
def branching(request, monkeypatch):
    """Every test runs both ways a step may be taken: as a captured graph would, and with the CPU's shortcuts."""
    monkeypatch.setattr(Batch, "branch_free", request.param == "branch-free")


class Batch:
    """Rows in the slots of one :class:`SlotState`, stepped as the scheduler steps them."""

    branch_free = True

    def __init__(self, settings, delay=None, histories=None, k=K, v=V, bos=BOS, eos=EOS):
        self.k, self.v, self.bos, self.eos = k, v, bos, eos
        self.state = SlotState(len(settings), k, v)
        for i, s in enumerate(settings):
            d = delay(i) if callable(delay) else delay
            self.state.assign(i, s, d or DelayState(bos=torch.full((k,), -1), eos=torch.full((k,), 10**6)),
                              None if histories is None else torch.tensor(histories[i]))

    def __len__(self):
        return len(self.state.settings)

    def step(self, logits):
        n = len(self)
        frames, new = choose_frames(logits.expand(n, -1) if logits.shape[0] == 1 else logits,
                                    self.state.view(0, n), self.bos, self.eos, self.state.candidates(n),
                                    branch_free=self.branch_free)
        self.state.commit(0, n, new)
        return frames

    def history(self, i):
        """Row ``i``'s remembered frames, oldest first."""
        seen = int(self.state.all.seen[i])
        return self.state.all.history[i, self.state.window - seen:]


def row(temperature=1.0, top_k=50, top_p=1.0, seed=0, prompt=(5, 6, 7, 8, 9, 10, 11, 99), free=False):
    delay = DelayState.from_prompt(list(prompt), K, audio_bos_id=99, delay_id=98)
    if free:
        delay.bos[:] = -1
    return Batch([RowSettings(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)], delay=delay)


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
        frame = r.step(logits)[0]
        assert [int(frame[k]) == BOS for k in range(K)] == [k >= step for k in range(K)]


def test_eos_spreads_one_codebook_per_step_after_the_first():
    r = row(temperature=0.0, free=True)
    r.state.all.last_delay[0] = True  # the audio has ended: a stream EOS came before this step
    frames = [r.step(torch.randn(1, K * V))[0] for _ in range(K)]
    for step, frame in enumerate(frames):
        assert [int(frame[k]) == EOS for k in range(K)][: step + 1] == [True] * (step + 1)


def test_choosing_a_stream_eos_starts_the_end():
    r = row(temperature=0.0, free=True)
    logits = torch.randn(1, K * V)
    logits.view(K, V)[:, EOS] = -1e9
    logits.view(K, V)[0, EOS] = 1e9  # codebook 0 ends the audio now
    first = r.step(logits)[0]
    assert int(first[0]) == EOS and bool(r.state.all.last_delay[0])
    logits.view(K, V)[0, EOS] = -1e9
    second = r.step(logits)[0]
    assert int(second[0]) == EOS and int(second[1]) != EOS  # forced from the next step on, one codebook at a time


def test_no_forced_eos_before_the_audio_ends():
    r = row(temperature=0.0, free=True)
    logits = torch.randn(1, K * V)
    logits.view(K, V)[:, EOS] = -1e9
    for _ in range(K + 2):
        assert not bool((r.step(logits)[0] == EOS).any())
    assert not bool(r.state.all.last_delay[0])


def test_top_k_and_seeded_draws():
    logits = torch.randn(1, K * V)
    a, b = row(top_k=3, seed=4, free=True), row(top_k=3, seed=4, free=True)
    fa, fb = a.step(logits)[0], b.step(logits)[0]
    assert torch.equal(fa, fb)
    top3 = torch.topk(logits.view(K, V), 3, dim=-1).indices
    assert all(int(fa[k]) in top3[k].tolist() for k in range(K))
    g = row(temperature=0.0, free=True)
    assert torch.equal(g.step(logits)[0], logits.view(K, V).argmax(-1))


def test_rows_are_independent_in_a_batch():
    logits = torch.randn(3, K * V)
    alone = [row(seed=i, top_p=0.9, free=True).step(logits[i:i + 1])[0] for i in range(3)]
    free_delay = DelayState(bos=torch.full((K,), -1), eos=torch.full((K,), 10**6))
    together = Batch([RowSettings(temperature=1.0, top_k=50, top_p=0.9, seed=i) for i in range(3)], delay=free_delay)
    frames = together.step(logits)
    assert all(torch.equal(a, frames[i]) for i, a in enumerate(alone))
    # and whatever the batch's other rows ask for (top-k off widens the candidates every row is ranked among)
    mixed = Batch([RowSettings(temperature=1.0, top_k=50, top_p=0.9, seed=0),
                   RowSettings(temperature=1.0, top_k=0, top_p=1.0, seed=9)], delay=free_delay)
    assert torch.equal(mixed.step(logits[:2])[0], alone[0])


def test_draws_are_counter_based_not_drawn_from_a_generator():
    """A draw depends on (seed, step, codebook, token) alone: not on the global generator, nor on earlier draws."""
    logits = torch.randn(1, K * V)
    torch.manual_seed(0)
    first = row(seed=7, free=True).step(logits)[0]
    torch.manual_seed(1)
    torch.rand(1000)
    assert torch.equal(row(seed=7, free=True).step(logits)[0], first)
    r = row(seed=7, free=True)
    steps = [r.step(logits)[0] for _ in range(4)]
    assert torch.equal(steps[0], first) and not all(torch.equal(steps[0], f) for f in steps[1:])
    assert not torch.equal(row(seed=8, free=True).step(logits)[0], first)


def test_counter_uniform_is_uniform_and_sees_every_bit_of_the_seed():
    cells = torch.arange(K * V).view(K, V)
    seeds = torch.tensor([[0, 0], [1, 0], [0, 1], [0xFFFFFFFF, 0xFFFFFFFF]])
    u = counter_uniform(seeds, torch.zeros(4, dtype=torch.long), cells, salt=0)
    assert u.shape == (4, K, V) and float(u.min()) > 0 and float(u.max()) < 1
    flat = u[0].flatten()
    assert abs(float(flat.mean()) - 0.5) < 0.01 and abs(float(flat.var()) - 1 / 12) < 0.005
    assert torch.histc(flat, bins=10, min=0, max=1).min() > 0.09 * flat.numel()
    for i in range(4):  # seeds differing in the low or the high half, and the step, give unrelated numbers
        for j in range(i + 1, 4):
            assert float((u[i] - u[j]).abs().mean()) > 0.3
    next_step = counter_uniform(seeds[:1], torch.ones(1, dtype=torch.long), cells, salt=0)
    other_salt = counter_uniform(seeds[:1], torch.zeros(1, dtype=torch.long), cells, salt=1)
    assert float((next_step - u[:1]).abs().mean()) > 0.3 and float((other_salt - u[:1]).abs().mean()) > 0.3
    per_row = counter_uniform(seeds[:2], torch.zeros(2, dtype=torch.long), cells.expand(2, K, V), salt=0)
    assert torch.equal(per_row, u[:2])  # cells given per row or shared: the same numbers


def reference_uniform(seed: int, step: int, cell: int, salt: int) -> float:
    """The counter-based number as specified, in plain Python integers: a request's audio for a seed must not
    change between releases or devices, so the hash is part of the contract."""
    m = 0xFFFFFFFF

    def mix(x: int) -> int:
        x = (((x >> 16) ^ x) * 0x45D9F3B) & m
        x = (((x >> 16) ^ x) * 0x45D9F3B) & m
        return (x >> 16) ^ x

    row = mix((seed & m) ^ mix(((seed >> 32) & m) ^ salt))
    row = mix(row ^ (step & m))
    return ((mix(row ^ mix(cell)) >> 9) + 0.5) / (1 << 23)


def test_counter_uniform_follows_its_specification_exactly():
    rng = torch.Generator().manual_seed(0)
    seeds = [0, 1, 5, 2**32 - 1, 2**32, 2**63 - 1] + torch.randint(0, 2**62, (10,), generator=rng).tolist()
    steps = [0, 1, 7, 2048] + torch.randint(0, 2**31, (12,), generator=rng).tolist()
    cells = torch.tensor([[0, 1, 2, 1025], [7, 8200, 65535, 2**20]])
    salt = 0x3C6EF372
    seed_t = torch.tensor([[x & 0xFFFFFFFF, x >> 32] for x in seeds])
    got = counter_uniform(seed_t, torch.tensor(steps), cells, salt)
    for i, (seed, step) in enumerate(zip(seeds, steps, strict=True)):
        want = [[reference_uniform(seed, step, int(c), salt) for c in row] for row in cells]
        assert got[i].tolist() == want, (seed, step)


def test_the_unit_interval_is_open_at_both_ends():
    from higgs_worker.engine.sampling import _unit

    ends = _unit(torch.tensor([0, 2**9 - 1, 2**32 - 1]))
    assert ends.dtype == torch.float32
    assert ends.tolist() == [0.5 / 2**23, 0.5 / 2**23, (2**23 - 0.5) / 2**23]
    assert 0 < float(ends.min()) and float(ends.max()) < 1


def test_draws_reach_every_candidate_not_only_the_first_few():
    # flat logits over the whole vocabulary: the draws must spread over it (tokens far past the codebook count),
    # both without ranking (top-k off) and among 40 ranked candidates
    logits = torch.zeros(1, K * V)
    plain = Batch([RowSettings(temperature=1.0, top_k=0, seed=i) for i in range(16)]).step(logits)
    assert int(plain.max()) > 100 and len(plain.unique()) > 60
    ranked = Batch([RowSettings(temperature=1.0, top_k=40, seed=i) for i in range(16)]).step(
        torch.arange(K * V, dtype=torch.float).view(1, K * V) * 1e-6)  # token t of each codebook ranks V - t
    assert len(ranked.unique()) > 20 and int(ranked.min()) >= V - 40


def test_a_seed_takes_its_high_half_into_account():
    state = SlotState(2, K, V)
    free_delay = DelayState(bos=torch.full((K,), -1), eos=torch.full((K,), 10**6))
    state.assign(0, RowSettings(temperature=1.0, seed=5), free_delay)
    state.assign(1, RowSettings(temperature=1.0, seed=5 + (1 << 40)), free_delay)
    assert state.all.seed.tolist() == [[5, 0], [5, 256]]


def test_settings_are_normalised_into_the_slot():
    state = SlotState(4, K, V)
    free_delay = DelayState(bos=torch.full((K,), -1), eos=torch.full((K,), 10**6))
    for i, top_k in enumerate((0, 7, V, V + 9)):
        state.assign(i, RowSettings(temperature=-1.0 if i == 3 else 0.5, top_k=top_k, ras_win_len=500), free_delay)
    assert state.all.top_k.tolist() == [V, 7, V, V]  # 0 and anything >= the vocabulary: off
    assert state.all.temperature.tolist() == [0.5, 0.5, 0.5, 0.0]
    assert state.all.ras_win.tolist() == [RAS_MAX_WINDOW] * 4


def test_the_candidates_hold_every_rows_top_k():
    state = SlotState(4, K, V)
    free_delay = DelayState(bos=torch.full((K,), -1), eos=torch.full((K,), 10**6))

    def candidates(*settings):
        for i, s in enumerate(settings):
            state.assign(i, s, free_delay)
        return state.candidates(len(settings))

    assert candidates(RowSettings(temperature=0.0, top_k=50)) is None  # greedy: nothing ranked
    assert candidates(RowSettings(temperature=1.0, top_k=0, top_p=1.0)) is None  # a plain draw
    assert candidates(RowSettings(temperature=1.0, top_k=50)) == CANDIDATE_BUCKETS[0] == 64
    assert candidates(RowSettings(temperature=1.0, top_k=64)) == 64
    assert candidates(RowSettings(temperature=1.0, top_k=65)) == 128
    assert candidates(RowSettings(temperature=1.0, top_k=600)) == V
    assert candidates(RowSettings(temperature=1.0, top_k=0, top_p=0.9)) == V  # top-p alone ranks every token
    assert candidates(RowSettings(temperature=1.0, top_k=10), RowSettings(temperature=1.0, top_k=300)) == 512
    assert candidates(RowSettings(temperature=1.0, top_k=10), RowSettings(temperature=1.0, top_k=0)) == V
    assert candidates(RowSettings(temperature=1.0, top_k=10), RowSettings(temperature=0.0, top_k=0)) == 64


def test_moving_a_slot_carries_its_whole_state():
    state = SlotState(3, K, V)
    delay = DelayState(bos=torch.arange(K), eos=torch.arange(K) + 3)
    state.assign(2, RowSettings(temperature=0.7, top_k=9, top_p=0.8, ras_win_len=3, ras_max_repeat=4, seed=77),
                 delay, torch.full((2, K), 6))
    state.move(2, 0)
    a = state.all
    assert (a.temperature[0].item(), a.top_k[0].item(), a.ras_win[0].item(), a.ras_max[0].item()) == (
        pytest.approx(0.7), 9, 3, 4)
    assert a.top_p[0].item() == pytest.approx(0.8) and a.seed[0].tolist() == [77, 0]
    assert torch.equal(a.bos[0], delay.bos) and torch.equal(a.eos[0], delay.eos)
    assert a.seen[0].item() == 2 and a.history[0, -2:].eq(6).all() and a.history[0, :-2].eq(-1).all()
    assert state.settings[0].seed == 77 and state.settings[2] is None


# -- what the draws may be: hand-made logits, small vocabularies ---------------------------------------------------
# The order is upstream's (transformers' warpers): temperature, then top-k, then top-p, then a draw from the
# softmax of what is left; repetition-aware sampling (RAS) then redraws, from the raw logits, any codebook whose
# token already appears ``ras_max_repeat`` times in the last ``ras_win_len`` frames.

SMALL_V, CODEBOOKS = 8, 8
INF = float("inf")


def free(temperature=1.0, top_k=0, top_p=1.0, seed=0, ras_win_len=0, ras_max_repeat=2) -> RowSettings:
    return RowSettings(temperature=temperature, top_k=top_k, top_p=top_p, ras_win_len=ras_win_len,
                       ras_max_repeat=ras_max_repeat, seed=seed)


def small(settings, histories=None, delay=None) -> Batch:
    """Rows past the delay pattern's start and far from its end (nothing is forced), in the small vocabulary."""
    return Batch(settings, delay=delay, histories=histories, k=CODEBOOKS, v=SMALL_V, bos=SMALL_V - 2,
                 eos=SMALL_V - 1)


def logits_of(values, v=SMALL_V, k=CODEBOOKS):
    """The same hand-made logits on every codebook; tokens not given are impossible (-inf)."""
    one = torch.full((v,), -INF)
    one[: len(values)] = torch.tensor(values, dtype=torch.float)
    return one.repeat(k)[None]


def draws(logits, steps=4, rows=64, **settings) -> torch.Tensor:
    """Every token drawn by ``rows`` rows with these settings (seeds 0, 1, ...) over ``steps`` steps: with the
    default, 64 rows x 8 codebooks x 4 steps = 2048 draws, in a few batched calls."""
    batch = small([free(seed=seed, **settings) for seed in range(rows)])
    return torch.cat([batch.step(logits).view(-1) for _ in range(steps)])


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
    batch = small([free(seed=i, **settings[i % len(settings)]) for i in range(copies * len(settings))])
    seen: list[set[int]] = [set() for _ in settings]
    for _ in range(steps):
        frames = batch.step(logits)
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


def ras_batch(history, rows, temperature=0.0, win=3, repeat=2, **settings) -> Batch:
    return small([free(temperature=temperature, seed=seed, ras_win_len=win, ras_max_repeat=repeat, **settings)
                  for seed in range(rows)], histories=[history] * rows)


def test_ras_redraws_a_codebook_whose_token_repeats_past_the_limit_and_leaves_the_others():
    # Greedy picks token 5 everywhere; the raw logits give it only about half the mass, beside token 3.
    logits = logits_of([-INF, -INF, -INF, 0.0, -INF, 0.1])
    # The window is the last 3 frames. Codebook 0: 5 twice in it (the limit) -> redrawn; codebook 1: once -> kept;
    # codebook 2: twice, but once before the window -> kept; codebook 3: never -> kept; 4 to 7: twice -> redrawn.
    history = [[1, 1, 5, 1, 5, 5, 5, 5],
               [5, 1, 1, 1, 5, 5, 5, 5],
               [1, 5, 1, 1, 1, 1, 1, 1],
               [5, 1, 5, 1, 5, 5, 5, 5]]
    batch = ras_batch(history, 200)
    frames = batch.step(logits)
    assert set(frames.view(-1).tolist()) <= {3, 5}
    assert all(torch.equal(batch.history(i)[-1], frames[i]) for i in range(200))
    redrawn = (frames == 3).float().sum(0)
    assert redrawn[1:4].tolist() == [0, 0, 0]  # under the limit: never redrawn
    for k in (0, 4, 5, 6, 7):  # redrawn from softmax(0, .1): token 3 about 47.5% of the time
        assert 70 <= redrawn[k] <= 120, (k, redrawn[k])


def test_ras_redraw_uses_the_raw_logits_without_temperature_top_k_or_top_p():
    # The first draw can only be token 1 (top_k=1); the redraw is from softmax(0, 2) of the raw logits (token 0:
    # 12%), not from what temperature .25 (token 0: .03%) or top-k left.
    logits = logits_of([0.0, 2.0])
    tokens = ras_batch([[1] * CODEBOOKS] * 2, 100, temperature=0.25, top_k=1, top_p=0.5).step(logits)
    assert 0.06 <= (tokens == 0).float().mean().item() <= 0.19


def test_ras_redraws_are_seeded_per_row():
    logits = logits_of([-INF, -INF, -INF, 0.0, -INF, 0.1])
    history = [[5] * CODEBOOKS] * 2

    def redraws(global_seed: int) -> torch.Tensor:
        torch.manual_seed(global_seed)  # whatever else used the global generator must not matter
        return ras_batch(history, 16).step(logits)

    first = redraws(0)
    assert (first == 3).any() and (first == 5).any()
    assert torch.equal(first, redraws(1)) and torch.equal(first, redraws(2))
    # a row's redraw is its own: the same alone as among the others
    assert torch.equal(ras_batch(history, 1).step(logits)[0], first[0])


def test_ras_never_counts_stream_bos_and_eos():
    # A row forced to the stream BOS (the delay pattern's start) keeps it, however often BOS fills the window.
    bos, eos = SMALL_V - 2, SMALL_V - 1
    logits = logits_of([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    for token in (bos, eos):
        delay = DelayState(bos=torch.full((CODEBOOKS,), 5 if token == bos else -1),
                           eos=torch.full((CODEBOOKS,), 0 if token == eos else 10**6))
        batch = small([free(seed=seed, ras_win_len=3, ras_max_repeat=2) for seed in range(20)],
                      histories=[[[token] * CODEBOOKS] * 3] * 20, delay=delay)
        assert batch.step(logits).unique().tolist() == [token]


def test_ras_sees_the_rows_own_recent_frames_and_is_off_at_window_zero():
    logits = logits_of([-INF, -INF, -INF, 0.0, -INF, 0.1])  # greedy: 5; raw: 5 or 3
    r = small([free(temperature=0.0, ras_win_len=4, ras_max_repeat=2)])
    frames = [r.step(logits)[0] for _ in range(30)]
    assert torch.equal(r.history(0)[-4:], torch.stack(frames[-4:]))  # the last frames, newest last
    tokens = torch.stack(frames)
    assert (tokens == 3).any()  # once 5 repeats twice in the last 4 frames, it is redrawn
    assert torch.equal(tokens[:2], torch.full((2, CODEBOOKS), 5))  # the first two frames cannot repeat yet
    off = small([free(temperature=0.0, ras_win_len=0, ras_max_repeat=2)], histories=[[[5] * CODEBOOKS] * 4])
    assert all(torch.equal(off.step(logits)[0], torch.full((CODEBOOKS,), 5)) for _ in range(30))


def test_ras_with_a_window_of_one_redraws_a_repeat_of_the_last_frame():
    logits = logits_of([-INF, -INF, -INF, 0.0, -INF, 0.1])
    batch = ras_batch([[5] * CODEBOOKS], 20, win=1, repeat=1)
    frames = batch.step(logits)
    assert (frames == 3).any()
    assert all(torch.equal(batch.history(i)[-1], frames[i]) for i in range(20))


def test_ras_window_counts_only_the_last_frames_of_a_longer_history():
    # 5 fills the older frames; the window of 2 holds only the last two (one 5): no redraw with a limit of 2
    logits = logits_of([-INF, -INF, -INF, 0.0, -INF, 0.1])
    history = [[5] * CODEBOOKS] * 6 + [[1] * CODEBOOKS, [5] * CODEBOOKS]
    assert ras_batch(history, 20, win=2, repeat=2).step(logits).unique().tolist() == [5]
    assert (ras_batch(history, 20, win=3, repeat=2).step(logits) == 3).any()


def test_branch_free_and_host_branching_steps_choose_the_same_frames():
    """The GPU's branch-free step and the CPU's shortcuts are one sampler: same frames, same state, every step."""
    torch.manual_seed(3)
    settings = [RowSettings(temperature=0.0, ras_win_len=4, seed=1),
                RowSettings(temperature=0.8, top_k=5, top_p=0.9, ras_win_len=3, ras_max_repeat=1, seed=2),
                RowSettings(temperature=1.2, top_k=0, top_p=1.0, seed=3),
                RowSettings(temperature=0.5, top_k=0, top_p=0.7, ras_win_len=2, seed=4)]
    histories = [[[1] * CODEBOOKS] * 2] * 4
    ways = []
    for branch_free in (True, False):
        batch = small(settings, histories=histories)
        batch.branch_free = branch_free
        logits = logits_of([0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
        ways.append((torch.stack([batch.step(logits) for _ in range(12)]), batch.state.all))
    (frames_a, state_a), (frames_b, state_b) = ways
    assert torch.equal(frames_a, frames_b)
    assert torch.equal(state_a.history, state_b.history) and torch.equal(state_a.step, state_b.step)
    assert len(set(frames_a[:, 1:].flatten().tolist())) > 2  # the sampled rows really drew, and redrew


def test_every_slot_tensor_lives_on_the_states_device_with_its_dtype():
    """On the meta device: a tensor made without the state's device (or with another dtype) shows at once."""
    state = SlotState(2, K, V, device="meta")
    dtypes = {"temperature": torch.float32, "top_p": torch.float32, "last_delay": torch.bool}
    for name in ("temperature", "top_k", "top_p", "seed", "ras_win", "ras_max", "step", "bos", "eos", "last_delay",
                 "history", "seen"):
        t = getattr(state.all, name)
        assert t.device.type == "meta" and t.dtype == dtypes.get(name, torch.long), name
    state.assign(0, RowSettings(temperature=1.0, top_k=50, ras_win_len=3, seed=3),
                 DelayState(bos=torch.full((K,), -1), eos=torch.full((K,), 10)), torch.zeros((2, K), dtype=torch.int32))
    assert state.all.history.dtype == torch.long
    for candidates in (64, None):  # every tensor the step makes must be made on the logits' device
        frames, new = choose_frames(torch.empty(2, K * V, device="meta"), state.view(0, 2), BOS, EOS, candidates)
        assert frames.device.type == "meta" and frames.shape == (2, K) and new.history.device.type == "meta"


def test_the_first_draws_are_those_the_specification_predicts():
    """Two equally likely tokens: token 1 exactly when the step's number for the codebook is at least 1/2, with
    steps counted from 0 and the draw's salt, for a seed with both halves set."""
    from higgs_worker.engine import sampling

    seed = (7 << 32) + 12345
    r = small([free(temperature=1.0, seed=seed)])
    logits = logits_of([0.0, 0.0])
    for step in range(3):
        frame = r.step(logits)[0].tolist()
        want = [int(reference_uniform(seed, step, k, sampling._SALT_DRAW) >= 0.5) for k in range(CODEBOOKS)]
        assert frame == want, step


def test_ras_off_never_redraws_even_with_a_limit_of_one():
    logits = logits_of([-INF, -INF, -INF, 0.0, -INF, 0.1])  # greedy: 5; a redraw could give 3
    off = small([free(temperature=0.0, ras_win_len=0, ras_max_repeat=1, seed=s) for s in range(16)],
                histories=[[[5] * CODEBOOKS] * 4] * 16)
    for _ in range(6):
        assert off.step(logits).unique().tolist() == [5]


def test_a_greedy_row_does_not_hide_the_sampling_rows_after_it():
    state = SlotState(3, K, V)
    free_delay = DelayState(bos=torch.full((K,), -1), eos=torch.full((K,), 10**6))
    for i, s in enumerate((RowSettings(temperature=0.0), RowSettings(temperature=1.0, top_k=300),
                           RowSettings(temperature=0.0))):
        state.assign(i, s, free_delay)
    assert state.candidates(3) == 512


def test_one_rows_stream_eos_does_not_end_its_neighbours_audio():
    delay = DelayState(bos=torch.full((K,), -1), eos=torch.arange(1, K + 1))  # past the start, not yet ending
    batch = Batch([RowSettings(temperature=0.0), RowSettings(temperature=0.0)], delay=delay)
    logits = torch.randn(2, K * V)
    logits.view(2, K, V)[:, :, EOS] = -1e9
    logits.view(2, K, V)[0, 0, EOS] = 1e9  # row 0's codebook 0 ends its audio; row 1 goes on
    batch.step(logits)
    assert batch.state.all.last_delay.tolist() == [True, False]
    logits.view(2, K, V)[0, 0, EOS] = -1e9
    second = batch.step(logits)
    assert int(second[0, 0]) == EOS and not bool((second[1] == EOS).any())
