"""nlteach.nn: the shared layers (RMSNorm, SwiGLU, RoPE, CausalConv, init helpers)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nlteach.nn import (
    CausalConv,
    RMSNorm,
    SwiGLU,
    apply_rope,
    init_linear,
    residual_std,
    rope_cos_sin,
)

# ---------------------------------------------------------------------------------------------
# init helpers


def test_init_linear_draws_normal_weights_and_zero_bias():
    torch.manual_seed(0)
    layer = nn.Linear(400, 300)
    init_linear(layer, std=0.05)
    assert torch.count_nonzero(layer.bias) == 0
    assert layer.weight.mean().abs() < 0.005
    assert abs(layer.weight.std().item() - 0.05) < 0.002
    init_linear(nn.Linear(3, 2, bias=False))  # no bias: nothing to zero


def test_residual_std_is_gpt2_scaling():
    assert residual_std(8) == pytest.approx(0.02 / 4)
    assert residual_std(2, std=0.1) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="n_layers"):
        residual_std(0)


# ---------------------------------------------------------------------------------------------
# RMSNorm


def test_rmsnorm_formula_shape_and_dtype():
    torch.manual_seed(0)
    norm = RMSNorm(6, eps=1e-3)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 6))
    x = torch.randn(2, 5, 6)  # [B, T, D]
    y = norm(x)
    assert y.shape == x.shape
    expected = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-3) * norm.weight
    torch.testing.assert_close(y, expected)
    unit = RMSNorm(6)(x)  # weight 1: unit root mean square per row
    torch.testing.assert_close(unit.pow(2).mean(-1), torch.ones(2, 5), atol=1e-4, rtol=0)
    assert norm(x.to(torch.bfloat16)).dtype == torch.bfloat16  # computed in float32, returned as x's dtype


def test_rmsnorm_bad_inputs():
    with pytest.raises(ValueError, match=r"x \[\.\.\., 6\]"):
        RMSNorm(6)(torch.randn(2, 5))
    with pytest.raises(ValueError, match="dim"):
        RMSNorm(0)
    with pytest.raises(ValueError, match="eps"):
        RMSNorm(4, eps=0.0)


# ---------------------------------------------------------------------------------------------
# SwiGLU


def test_swiglu_formula_shape_and_init():
    torch.manual_seed(0)
    mlp = SwiGLU(8, 12, out_std=0.001)
    x = torch.randn(3, 4, 8)  # [B, T, dim]
    y = mlp(x)
    assert y.shape == (3, 4, 8)
    W_gate, W_up = mlp.gate_up.weight[:12], mlp.gate_up.weight[12:]  # gate rows first
    torch.testing.assert_close(y, (F.silu(x @ W_gate.T) * (x @ W_up.T)) @ mlp.down.weight.T)
    assert mlp.gate_up.bias is None and mlp.down.bias is None
    assert mlp.down.weight.std() < 0.01 < mlp.gate_up.weight.std()  # the output map starts at out_std
    assert list(dict(mlp.named_parameters())) == ["gate_up.weight", "down.weight"]


def test_swiglu_bad_sizes():
    with pytest.raises(ValueError, match="hidden"):
        SwiGLU(8, 0)


# ---------------------------------------------------------------------------------------------
# RoPE


def test_rope_shapes_and_angles():
    cos, sin = rope_cos_sin(7, 8, 10000.0, "cpu")
    assert cos.shape == sin.shape == (7, 4) and cos.dtype == torch.float32
    torch.testing.assert_close(cos[0], torch.ones(4))  # position 0 is not rotated
    assert sin[3, 1].item() == pytest.approx(math.sin(3 * 10000.0 ** (-2 / 8)), abs=1e-6)


def test_rope_is_a_rotation_norm_preserving():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 8)  # [B, H, T, D]
    cos, sin = rope_cos_sin(9, 8, 100.0)
    y = apply_rope(x, cos, sin)
    assert y.shape == x.shape
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(y[:, :, 0], x[:, :, 0])  # position 0: identity


def test_rope_dot_product_depends_only_on_the_offset():
    torch.manual_seed(0)
    q, k = torch.randn(8), torch.randn(8)
    T = 12
    cos, sin = rope_cos_sin(T, 8, 100.0)
    qs = apply_rope(q.expand(T, 8), cos, sin)  # q at every position [T, D]
    ks = apply_rope(k.expand(T, 8), cos, sin)
    dots = qs @ ks.T  # [T, T]: q at s . k at t
    for offset in (-3, 0, 2, 5):
        diag = torch.diagonal(dots, offset=offset)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(torch.diagonal(dots, 0)[0], torch.diagonal(dots, 2)[0])  # but it does depend on it


def test_rope_bad_inputs():
    with pytest.raises(ValueError, match="even"):
        rope_cos_sin(4, 7, 10000.0)
    cos, sin = rope_cos_sin(4, 8, 10000.0)
    with pytest.raises(ValueError, match=r"cos and sin \[T, D/2\]"):
        apply_rope(torch.randn(1, 1, 5, 8), cos, sin)  # 5 positions, angles for 4
    with pytest.raises(ValueError, match=r"cos and sin \[T, D/2\]"):
        apply_rope(torch.randn(1, 1, 4, 6), cos, sin)


# ---------------------------------------------------------------------------------------------
# CausalConv


def test_causal_conv_shape_and_state_dict():
    conv = CausalConv(5, 3)
    assert conv(torch.randn(2, 7, 5)).shape == (2, 7, 5)  # [B, T, C]
    assert isinstance(conv, nn.Conv1d)
    assert {k: tuple(v.shape) for k, v in conv.state_dict().items()} == {"weight": (5, 1, 3)}


def test_causal_conv_is_causal():
    torch.manual_seed(0)
    conv = CausalConv(4, 3)
    x = torch.randn(2, 10, 4)
    y = conv(x)
    x2 = x.clone()
    x2[:, 6] += torch.randn(2, 4)  # change token 6
    y2 = conv(x2)
    torch.testing.assert_close(y2[:, :6], y[:, :6], rtol=0, atol=0)  # the past does not see it
    assert not torch.allclose(y2[:, 6], y[:, 6])
    assert torch.allclose(y2[:, 9], y[:, 9])  # window 3: token 9 sees 7..9 only


def test_causal_conv_formula_and_near_identity_start():
    torch.manual_seed(0)
    conv = CausalConv(3, 4)
    x = torch.randn(1, 6, 3)
    w = conv.weight[:, 0]  # [C, size]
    xp = F.pad(x, (0, 0, 3, 0))  # three zeros before the start
    expected = torch.stack([(xp[0, t:t + 4] * w.T).sum(0) for t in range(6)])[None]
    torch.testing.assert_close(conv(x), expected)
    torch.testing.assert_close(conv(x), x, atol=0.2, rtol=0)  # starts near the identity
    assert (conv.weight[:, 0, -1] - 1).abs().max() < 0.1 and conv.weight[:, 0, :-1].abs().max() < 0.1


def test_causal_conv_init_draws_like_conv1d_then_normal():
    """The weights a seed gives: nn.Conv1d's default init, then N(0, 0.02^2) plus 1 on the last tap
    (now, or when the owner calls reset_near_identity with defer_init=True)."""
    torch.manual_seed(3)
    ref = nn.Conv1d(6, 6, 4, groups=6, padding=3, bias=False)
    default = ref.weight.detach().clone()
    with torch.no_grad():
        ref.weight.normal_(0, 0.02)
        ref.weight[:, 0, -1] += 1.0
    torch.manual_seed(3)
    assert torch.equal(CausalConv(6, 4).weight, ref.weight)
    torch.manual_seed(3)
    deferred = CausalConv(6, 4, defer_init=True)
    assert torch.equal(deferred.weight, default)
    deferred.reset_near_identity()
    assert torch.equal(deferred.weight, ref.weight)


def test_causal_conv_bad_inputs():
    conv = CausalConv(4)
    with pytest.raises(ValueError, match=r"x \[B, T, 4\]"):
        conv(torch.randn(2, 4, 7))  # channels first
    with pytest.raises(ValueError, match=r"x \[B, T, 4\]"):
        conv(torch.randn(7, 4))
    with pytest.raises(ValueError, match="size"):
        CausalConv(4, 0)
