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


def test_codebook_k_is_forced_to_bos_for_k_plus_one_steps():
    r = row(temperature=0.0)
    for step in range(K + 1):
        frame = choose_frames([r], torch.randn(1, K * V), [False])[0]
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
