import argparse

import pytest
import torch
import torch.nn.functional as F

from nlteach.models import (
    IMPLS,
    MODELS,
    ModelConfig,
    TransformerLM,
    available_models,
    build_model,
    count_parameters,
    param_count,
    sample,
    size_to_budget,
    sliding_window_attention,
)
from nlteach.text import CharVocab

V = 37
# CMS periods short enough that every in-context level updates inside the tests' sequences (~20 tokens)
SMALL = dict(vocab_size=V, dim=32, n_layers=2, n_heads=4, cms_periods=(2, 4, 8))


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI box has 2 shared cores; one thread is faster and steadier there
    yield
    torch.set_num_threads(n)


def make(name: str, impl: str = "chunked", seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model(name, ModelConfig(**{**SMALL, **kw}, impl=impl))


def test_registry_and_unknown_name_error():
    assert "transformer" in available_models() and MODELS["transformer"] is TransformerLM
    with pytest.raises(ValueError) as e:
        build_model("hopeless", ModelConfig(**SMALL))
    assert "'hopeless'" in str(e.value) and "transformer" in str(e.value)


@pytest.mark.parametrize("bad, match", [
    (dict(dim=30, n_heads=4), "divisible by n_heads"),
    (dict(dim=12, n_heads=4), "must be even"),
    (dict(vocab_size=0), "vocab_size must be a positive int"),
    (dict(n_layers=2.0), "n_layers must be a positive int"),
    (dict(impl="fast"), "impl='fast'"),
    (dict(dropout=1.0), "dropout"),
])
def test_config_validation_names_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**{**SMALL, **bad})


def test_forward_shape_and_input_errors():
    m = make("transformer")
    idx = torch.randint(0, V, (3, 11))
    assert m(idx).shape == (3, 11, V)
    with pytest.raises(ValueError, match=r"integer \(long\) tensor \[B, T\]"):
        m(idx.float())
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        m(idx[0])
    with pytest.raises(ValueError, match="vocab_size is 37"):
        m(torch.full((1, 4), V))


@pytest.mark.parametrize("name", available_models())
@pytest.mark.parametrize("impl", IMPLS)
def test_causality(name, impl):
    """Changing tokens after t leaves the logits at positions <= t unchanged (and changes later ones)."""
    m = make(name, impl).double().eval()
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, V, (2, 24), generator=g)
    t = 9
    changed = idx.clone()
    changed[:, t + 1:] = torch.randint(0, V, (2, 24 - t - 1), generator=g)
    with torch.no_grad():
        a, b = m(idx), m(changed)
    assert torch.equal(a[:, :t + 1], b[:, :t + 1])
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])


@pytest.mark.parametrize("name", available_models())
def test_naive_and_chunked_give_the_same_logits_and_grads(name):
    naive, chunked = make(name, "naive"), make(name, "chunked", seed=1)
    chunked.load_state_dict(naive.state_dict())
    idx = torch.randint(0, V, (2, 21), generator=torch.Generator().manual_seed(2))
    outs = []
    for m in (naive, chunked):
        logits = m(idx)
        F.cross_entropy(logits.flatten(0, 1), idx.roll(-1, 1).flatten()).backward()
        outs.append((logits.detach(), [p.grad for p in m.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-6)
    for ga, gb in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)


CONTRACT_MODELS = ["transformer", "titans", "hope", "hope-attention"]  # ablations share HOPE's code


@pytest.mark.parametrize("name", CONTRACT_MODELS)
def test_overfits_one_small_batch(name):
    m = make(name)
    idx = torch.randint(0, V, (4, 33), generator=torch.Generator().manual_seed(3))
    x, y = idx[:, :-1], idx[:, 1:]
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.0)
    first = None
    for _ in range(150):
        loss = F.cross_entropy(m(x).flatten(0, 1), y.flatten())
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 3.0 and loss.item() < 0.1, (first, loss.item())  # ln(37) = 3.6 at the start


def test_tied_embeddings_share_one_matrix_and_count_once():
    tied, untied = make("transformer"), make("transformer", tie_embeddings=False)
    assert tied.head.weight is tied.embed.weight
    assert untied.head.weight is not untied.embed.weight
    assert count_parameters(untied) - count_parameters(tied) == V * 32
    assert count_parameters(tied, non_embedding=True) == count_parameters(untied, non_embedding=True)


def test_parameter_count_matches_the_formula():
    cfg = ModelConfig(**SMALL)
    d, h, L = cfg.dim, cfg.hidden, cfg.n_layers
    per_layer = 4 * d * d + 3 * d * h + 2 * d  # qkv + out, SwiGLU gate/up/down, two RMSNorm gains
    expected = V * d + L * per_layer + d  # tied embedding + blocks + final norm
    assert cfg.hidden == 88  # 8/3 * 32 rounded up to a multiple of 8
    assert count_parameters(make("transformer")) == expected == param_count("transformer", cfg)


@pytest.mark.parametrize("name", available_models())
def test_size_to_budget_picks_the_closest_width(name):
    base = ModelConfig(**SMALL)
    budget = 300_000
    cfg = size_to_budget(name, budget, base)
    m = 2 * base.n_heads
    assert cfg.dim % m == 0 and cfg.n_layers == base.n_layers
    got = param_count(name, cfg)
    for other in (cfg.dim - m, cfg.dim + m):  # neither neighbour is closer to the budget
        assert abs(param_count(name, cfg.replace(dim=other)) - budget) >= abs(got - budget)
    with pytest.raises(ValueError, match="too small"):
        size_to_budget(name, 100, base)


def test_bench_models_runs_and_reports_ratios(capsys):
    from nlteach.bench import models as bench_models

    p = argparse.ArgumentParser()
    bench_models.add_arguments(p)
    args = p.parse_args(["--params", "20000", "--seq-len", "16", "--batch-size", "2", "--rounds", "1"])
    args.preset, args.device = "tiny", torch.device("cpu")
    result = bench_models.run(args)
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == set(available_models())
    assert rows["transformer"]["x_transformer"] == 1.0
    assert all(r["tokens_per_s"] > 0 for r in rows.values())
    assert rows["transformer"]["flops_x"] == 1.0 and all(r["gflop_step"] > 0 for r in rows.values())
    assert rows["hope"]["flops_x"] > 1.0  # five memories read, differentiated and written per token
    assert "flops_x" in capsys.readouterr().out


def test_bench_models_memory_hidden_lowers_hopes_flop_ratio():
    from nlteach.bench import models as bench_models

    p = argparse.ArgumentParser()
    bench_models.add_arguments(p)
    ratios = []
    for extra in ([], ["--memory-hidden", "2"]):
        args = p.parse_args(["--models", "transformer,hope", "--params", "20000", "--seq-len", "16",
                             "--batch-size", "2", "--rounds", "1", *extra])
        args.preset, args.device = "tiny", torch.device("cpu")
        result = bench_models.run(args)
        ratios.append(next(r["flops_x"] for r in result["rows"] if r["model"] == "hope"))
    assert result["memory_hidden"] == 2
    assert ratios[1] < ratios[0]  # smaller memories: fewer of the parameters are read-differentiated-written


def test_bench_counts_the_cpu_attention_kernel():
    """torch's FLOP counter has no formula for the CPU attention kernel; the bench supplies one
    that agrees with torch's own formulas (forward: the explicit products; backward: torch's
    flash-attention formula) and counts only the lower triangle when causal."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count

    from nlteach.bench.models import attention_flops, step_flops

    B, H, T, d = 2, 3, 10, 4
    q, k, v = (torch.randn(B, H, T, d, requires_grad=True) for _ in range(3))
    with FlopCounterMode(display=False) as c:
        torch.softmax(q @ k.transpose(-1, -2), -1) @ v
    shape = (B, H, T, d)
    assert attention_flops(shape, shape, shape, False) == c.get_total_flops()
    assert attention_flops(shape, shape, shape, False, backward=True) == sdpa_backward_flop_count(shape, *[shape] * 3)
    full = attention_flops(shape, shape, shape, False) + attention_flops(shape, shape, shape, False, backward=True)
    causal = step_flops(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward())
    assert causal == full * (T + 1) // (2 * T)


def test_bench_counts_in_place_batched_products():
    """torch's FLOP counter counts x.baddbmm_(a, b) as 0; the in-context CMS updates its weights (and
    their gradients) with it, so the bench counts it like baddbmm."""
    from nlteach.bench.models import step_flops

    a, b, c = torch.randn(3, 4, 5), torch.randn(3, 5, 6), torch.randn(3, 4, 6)
    assert step_flops(lambda: c.clone().baddbmm_(a, b, alpha=-1)) == step_flops(lambda: a @ b) == 2 * 3 * 4 * 5 * 6


def test_every_contract_name_builds_the_right_class():
    from nlteach.models import HopeAttentionLM, HopeLM, TitansLM

    classes = {"transformer": TransformerLM, "titans": TitansLM, "hope": HopeLM, "hope-attention": HopeAttentionLM}
    for name, cls in classes.items():
        assert type(make(name)) is cls


def test_state_dict_keys_of_the_shared_layers_are_stable():
    """Checkpoints keep loading: the layers from nlteach.nn keep the parameter names they had."""
    titans = make("titans", n_layers=1).state_dict()
    assert {"blocks.0.mixer.conv.conv.weight", "blocks.0.mlp.gate_up.weight", "blocks.0.mlp.down.weight",
            "blocks.0.norm1.weight", "norm.weight"} <= set(titans)
    hope = make("hope", n_layers=1).state_dict()
    assert "blocks.0.mixer.conv.weight" in hope
    assert "blocks.0.attn.qkv.weight" in make("transformer", n_layers=1).state_dict()


def test_hope_ablations_change_what_they_say():
    from nlteach.cms import CMS
    from nlteach.models import CMSBranch
    from nlteach.titans import SelfModifyingTitans

    def layers(m, cls):
        return [x for x in m.modules() if isinstance(x, cls)]

    assert len(layers(make("hope"), CMS)) == 2 and not layers(make("hope-no-cms"), CMS)
    assert all(b.in_context for b in layers(make("hope"), CMSBranch))
    assert not any(b.in_context for b in layers(make("hope-static-cms"), CMSBranch))
    assert all(b.target == "self" for b in layers(make("hope-cms-selfgen"), CMSBranch))
    assert all(b.in_context for b in layers(make("hope-attention"), CMSBranch))
    assert not any(b.in_context for b in layers(make("hope-attention-static-cms"), CMSBranch))
    assert all(not x.opts["self_modify"] for x in layers(make("hope-no-selfmod"), SelfModifyingTitans))
    assert all(not x.opts["dgd"] for x in layers(make("hope-no-dgd"), SelfModifyingTitans))
    # longer than the projection chunk (32), so the k, v, eta, alpha memories update inside the sequence
    idx = torch.randint(0, V, (1, 40), generator=torch.Generator().manual_seed(4))
    base = make("hope")(idx)
    for name in ("hope-no-selfmod", "hope-no-dgd", "hope-cms-selfgen"):  # same weights, different in-context rule
        m = make(name)
        m.load_state_dict(make("hope").state_dict())
        assert not torch.allclose(m(idx), base)


def test_cms_level_parameters_cover_every_cms_weight():
    from nlteach.models import cms_level_parameters

    m = make("hope", cms_periods=(1, 8))
    levels = cms_level_parameters(m)
    # per block and level: W_in, W_out, the value map, the step gate's weight and bias
    assert len(levels) == 2 and all(len(lv) == 5 * m.config.n_layers for lv in levels)
    cms = {id(p) for name, p in m.named_parameters() if ".mlp." in name}
    assert {id(p) for lv in levels for p in lv} == cms
    static = cms_level_parameters(make("hope-static-cms", cms_periods=(1, 8)))
    assert all(len(lv) == 2 * m.config.n_layers for lv in static)
    with pytest.raises(ValueError, match="no CMS"):
        cms_level_parameters(make("titans"))


def test_memory_config_fields_are_validated():
    for bad, match in [(dict(chunk_size=0), "chunk_size"), (dict(momentum=1.0), "momentum"),
                       (dict(cms_periods=()), "cms_periods"), (dict(memory_hidden=-1), "memory_hidden")]:
        with pytest.raises(ValueError, match=match):
            ModelConfig(**{**SMALL, **bad})


def test_every_model_config_field_has_command_line_help():
    import dataclasses

    assert all(f.metadata.get("help") for f in dataclasses.fields(ModelConfig))


def test_sample_is_deterministic_and_uses_the_vocabulary():
    torch.manual_seed(0)
    vocab = CharVocab("abcde\n")
    model = build_model("transformer", ModelConfig(vocab_size=6, dim=8, n_layers=1, n_heads=2))
    a = sample(model, vocab, "ab", 20, seed=3, context=8)
    assert a == sample(model, vocab, "ab", 20, seed=3, context=8) and len(a) == 20 and set(a) <= set("abcde\n")
    assert sample(model, vocab, "ab", 5, temperature=0) == sample(model, vocab, "ab", 5, temperature=0, seed=9)
    assert model.training  # sampling restores the mode


@pytest.mark.parametrize("name", ["transformer", "titans", "hope", "hope-attention", "hope-static-cms",
                                  "hope-no-selfmod", "hope-no-dgd"])
def test_size_to_budget_with_match_mlp_lands_within_half_a_percent(name):
    base = ModelConfig(**{**SMALL, "cms_periods": (16, 64, 256)}, attention_conv=True)
    for budget in (60_000, 200_000):
        cfg = size_to_budget(name, budget, base, match_mlp=True)
        assert abs(param_count(name, cfg) - budget) <= 0.005 * budget, (name, budget, param_count(name, cfg))
        assert param_count(name, cfg.replace(mlp_hidden=None)) <= budget  # the widest dim within budget


def test_attention_window_and_conv():
    """A window as long as the sequence is full causal attention; a window W makes the output at t
    independent of tokens before t - W + 1 (and dependent on those inside); the convolution keeps
    causality and is off by default."""
    full = make("transformer").double().eval()
    windowed = make("transformer", attention_window=5).double().eval()
    windowed.load_state_dict(full.state_dict())
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(0, V, (2, 12), generator=g)
    with torch.no_grad():
        long_window = make("transformer", attention_window=12).double().eval()
        long_window.load_state_dict(full.state_dict())
        assert torch.allclose(long_window(idx), full(idx), atol=1e-12)
        a = windowed(idx)
        assert torch.allclose(a[:, :5], full(idx)[:, :5], atol=1e-12)  # the first W positions see everything
        # one layer of attention per block, 2 blocks: position t reads up to 2 * (W - 1) tokens back
        t, reach = 11, 2 * (5 - 1)
        far = idx.clone()
        far[:, : t - reach] = (far[:, : t - reach] + 1) % V
        assert torch.allclose(windowed(far)[:, t], a[:, t], atol=1e-12)
        near = idx.clone()
        near[:, t - 1] = (near[:, t - 1] + 1) % V
        assert not torch.allclose(windowed(near)[:, t], a[:, t])
    q, k, v = torch.randn(3, 2, 2, 37, 6, dtype=torch.float64, generator=g)
    lag = torch.arange(37)[:, None] - torch.arange(37)[None, :]
    for w in (1, 5, 16, 36):
        dense = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=(lag >= 0) & (lag < w))
        assert torch.allclose(sliding_window_attention(q, k, v, w), dense, atol=1e-12)
    conv = make("transformer", attention_conv=True, attention_window=4).double().eval()
    later = idx.clone()
    later[:, 7:] = (later[:, 7:] + 1) % V
    with torch.no_grad():
        assert torch.equal(conv(idx)[:, :7], conv(later)[:, :7]) and not torch.allclose(conv(idx)[:, 7], conv(later)[:, 7])
    assert any("conv" in k for k in conv.state_dict()) and not any("conv" in k for k in full.state_dict())
    with pytest.raises(ValueError, match="attention_window must be a positive int"):
        ModelConfig(**SMALL, attention_window=0)
