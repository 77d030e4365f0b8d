import numpy as np
import pytest
import torch

from nlteach.text import CharVocab, RandomWindowSampler, eval_windows, get_batch, load_char_corpus


def test_vocab_is_sorted_characters_and_round_trips():
    v = CharVocab.from_text("cat\nsat a")
    assert v.chars == "\n acst" and v.size == 6
    ids = v.encode("cats\n")
    assert ids.dtype == torch.long and ids.tolist() == [3, 2, 5, 4, 0]
    assert v.decode(ids) == "cats\n" and v.decode(ids.numpy()) == "cats\n"
    assert v.encode("").shape == (0,)


def test_vocab_errors_name_the_problem():
    v = CharVocab("ab")
    with pytest.raises(ValueError, match=r"'z'"):
        v.encode("abz")
    with pytest.raises(ValueError, match="out of range"):
        v.decode([2])
    with pytest.raises(ValueError, match="twice"):
        CharVocab("aa")


def test_tinyshakespeare_corpus(data_mirror):
    c = load_char_corpus("tinyshakespeare")
    n = sum(t.numel() for t in c.splits.values())
    assert c.vocab.size == 65 and c.vocab.chars[:2] == "\n "
    assert list(c.vocab.chars) == sorted(c.vocab.chars)
    assert abs(c["train"].numel() / n - 0.90) < 1e-5 and abs(c["val"].numel() / n - 0.05) < 1e-5
    assert c.vocab.decode(c["train"][:14]) == "First Citizen:"
    with pytest.raises(ValueError, match="available: tinyshakespeare"):
        load_char_corpus("wikitext")


def test_get_batch_targets_are_inputs_shifted():
    tokens = torch.arange(100)
    x, y = get_batch(tokens, [0, 10, 89], 10)
    assert x.shape == y.shape == (3, 10)
    assert torch.equal(y[:, :-1], x[:, 1:]) and y[2, -1] == 99
    with pytest.raises(ValueError, match="window starts"):
        get_batch(tokens, [90], 10)


def test_sampler_depends_on_seed_and_step_only_and_resumes():
    s = RandomWindowSampler(1000, 16, 8, seed=3)
    first = [s.next_starts() for _ in range(5)]
    assert all(((a >= 0) & (a <= 1000 - 17)).all() for a in first)
    t = RandomWindowSampler(1000, 16, 8, seed=3)
    t.load_state_dict({**s.state_dict(), "step": 2})
    assert np.array_equal(t.next_starts(), first[2])
    assert not np.array_equal(RandomWindowSampler(1000, 16, 8, seed=4).next_starts(), first[0])
    with pytest.raises(ValueError, match="seq_len"):
        t.load_state_dict({**s.state_dict(), "seq_len": 32})


def test_ranks_split_the_global_batch():
    single = RandomWindowSampler(500, 8, 6, seed=1).starts_for_step(7)
    parts = [RandomWindowSampler(500, 8, 6, seed=1, rank=r, world_size=3).starts_for_step(7) for r in range(3)]
    assert np.array_equal(np.concatenate(parts), single)
    with pytest.raises(ValueError, match="divisible"):
        RandomWindowSampler(500, 8, 5, seed=1, world_size=2)


def test_eval_windows_are_fixed_and_in_range():
    w = eval_windows(1000, 10, 50)
    assert len(w) == 50 and w[0] == 0 and w[-1] == 1000 - 11 and (np.diff(w) >= 10).all()
    assert len(eval_windows(1000, 10, 10_000)) == 99  # capped at the non-overlapping count
    with pytest.raises(ValueError, match="needs at least"):
        eval_windows(5, 10, 3)
