"""nlteach.course.nb12_scaling: the cost of a preset, FLOPs per token against the sequence length,
FLOP ratio x rate ratio = time ratio, data parallelism, exact resume and bf16 (notebook 12)."""

import pytest
import torch

from nlteach.bench.models import attention_flops
from nlteach.course import nb12_scaling as S
from nlteach.course.widgets import render
from nlteach.experiments import lm_comparison
from nlteach.models import ModelConfig, build_model, count_parameters


def test_preset_rows_are_the_comparison_s_sizes():
    rows = {r["preset"]: r for r in S.preset_rows()}
    assert list(rows) == ["tiny", "laptop", "full"]
    for p, r in rows.items():
        z = lm_comparison.sizes(p)
        assert r["params"] == z["params"] and r["steps"] == z["steps"]
        assert r["tokens_per_step"] == z["batch_size"] * z["seq_len"]
        assert r["tokens_per_run"] == z["steps"] * z["batch_size"] * z["seq_len"]
    assert rows["full"]["tokens_per_run"] > rows["laptop"]["tokens_per_run"] > rows["tiny"]["tokens_per_run"]


def test_sized_config_is_what_train_builds_and_counts_attention_layers():
    cfg = S.sized_config("transformer", "tiny")
    assert cfg.n_layers == lm_comparison.sizes("tiny")["n_layers"] and cfg.vocab_size == S.VOCAB_SIZE
    assert S.attention_layer_count("transformer", cfg) == cfg.n_layers
    assert S.attention_layer_count("hope", S.sized_config("hope", "tiny")) == 0
    assert S.attention_layer_count("hope-attention", S.sized_config("hope-attention", "tiny")) == cfg.n_layers


def test_the_estimate_is_6n_plus_causal_attention():
    assert S.estimate_step_flops(1000, 2, 8) == 6 * 1000 * 2 * 8
    shape = (2, 4, 8, 4)
    att = attention_flops(shape, shape, shape, True) + attention_flops(shape, shape, shape, True, backward=True)
    assert S.estimate_step_flops(1000, 2, 8, attention_layers=3, dim=16, n_heads=4) == 6 * 1000 * 16 + 3 * att


def test_counted_flops_are_linear_in_the_batch_and_near_the_estimate_for_a_transformer():
    cfg = ModelConfig(vocab_size=S.VOCAB_SIZE, dim=32, n_layers=2, n_heads=2)
    one = S.count_step_flops("transformer", cfg, 3, 32)  # counted on 1 sequence, scaled to 3
    three = S.count_step_flops("transformer", cfg, 3, 32, count_batch=3)
    assert one == three
    torch.manual_seed(0)
    n = count_parameters(build_model("transformer", cfg), non_embedding=True)
    est = S.estimate_step_flops(n, 3, 32, attention_layers=2, dim=32, n_heads=2)
    head = 6 * S.VOCAB_SIZE * 32 * 3 * 32  # the output layer (tied to the embedding, so not in n)
    assert abs(three - (est + head)) / three < 0.05


def test_cost_rows_count_when_asked():
    (row,) = S.cost_rows("tiny", ["transformer"], count=True)
    assert row["tokens_per_run"] == S.preset_rows(["tiny"])[0]["tokens_per_run"]
    assert row["params"] > row["non_embedding"] > 0
    assert row["est_pflop_run"] == pytest.approx(row["est_gflop_step"] * 1e9 * lm_comparison.sizes("tiny")["steps"] / 1e15)
    assert 1.0 < row["counted_over_est"] < 1.2  # the estimate leaves out the output layer
    assert "counted_gflop_step" not in S.cost_rows("tiny", ["transformer"])[0]


def test_attention_flops_per_token_grow_linearly_with_the_length():
    lens = (16, 32, 64)
    curves = S.flops_per_token(["transformer"], lens, dim=16)
    a, b, c = curves["transformer"]
    # per token: constant + (attention) slope * (T + 1) / 2 -> equal steps for equal steps in T + 1
    assert (c - b) / (b - a) == pytest.approx((64 - 32) / (32 - 16), rel=1e-9)
    est = S.estimated_flops_per_token(["transformer"], lens, dim=16)["transformer"]
    head = 6 * S.VOCAB_SIZE * 16  # per token: the output layer, tied to the embedding (not in the estimate)
    for counted, estimated in zip(curves["transformer"], est):
        assert counted == pytest.approx(estimated + head, rel=0.05)
    fig = render(S.draw_flops_per_token, {"seq_lens": lens, "curves": curves})
    assert len(fig.axes[0].lines) == 1


def test_time_ratio_is_flop_ratio_times_rate_ratio_in_every_bench_file():
    rows = S.rate_rows()
    if not rows:
        pytest.skip("no bench_models file committed")
    for r in rows:
        assert r["flops_x_times_rate_ratio"] == pytest.approx(r["time_x"], rel=1e-9), r


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_combined_by_all_reduce_mean_equal_one_process(world_size):
    torch.manual_seed(0)
    model = build_model("transformer", ModelConfig(vocab_size=S.VOCAB_SIZE, dim=16, n_layers=1, n_heads=2))
    x = torch.randint(0, S.VOCAB_SIZE, (8, 17), generator=torch.Generator().manual_seed(1))
    check = S.data_parallel_check(model, x[:, :-1], x[:, 1:], world_size)
    assert check["max_abs_diff"] < 1e-6 * max(1.0, check["max_abs_grad"])
    wrong = S.data_parallel_check(model, x[:, :-1], x[:, 1:], world_size, combine=lambda g, n: sum(g))
    assert wrong["max_abs_diff"] > 0.1 * check["max_abs_grad"]  # summing is world_size times too large
    with pytest.raises(ValueError, match="world_size=3"):
        S.rank_gradients(model, x[:, :-1], x[:, 1:], 3)


def test_all_reduce_mean_weights_unequal_shards_by_rows():
    g = [torch.tensor([1.0]), torch.tensor([4.0])]
    assert S.all_reduce_mean(g, [3, 1]).item() == pytest.approx(1.75)
    assert S.all_reduce_mean(g, [2, 2]).item() == pytest.approx(2.5)


def test_resume_check_is_bit_equal(data_mirror):
    r = S.resume_check()
    assert r["stopped_at"] == 5 and r["same_metrics"] and r["same_weights"]
    assert {"model", "optimizer", "scheduler", "sampler", "per_rank"} <= set(r["checkpoint_keys"])


def test_passes_over_data_divide_tokens_by_the_training_split(data_mirror):
    rows = S.passes_over_data()
    assert [r["preset"] for r in rows] == ["tiny", "laptop", "full"]
    for r, p in zip(rows, S.preset_rows(), strict=True):
        assert r["passes"] == pytest.approx(p["tokens_per_run"] / r["train_chars"])
    assert rows[-1]["passes"] > 1 > rows[0]["passes"]


def test_bf16_error_is_near_its_unit_roundoff():
    e = S.bf16_matmul_error(64)
    assert e["float32"] < 1e-5 < e["bf16"] < e["bf16_eps"]
    assert e["bf16_eps"] == 2.0 ** -7 and e["float32_eps"] == 2.0 ** -23


def test_reading_example_is_a_paired_verdict_with_provenance():
    r = S.reading_example()
    if r is None:
        pytest.skip("the reading example's results file is not committed")
    assert r["verdict"].startswith(f"{r['a']} - {r['b']}, val_loss")
    assert {"git_commit", "git_dirty", "command"} <= set(r["provenance"])
    assert set(r["runs"]) >= {r["a"], r["b"]}
