"""The library on CUDA (issue 19, item 7): each chunked kernel on the GPU against the naive token
loop on the CPU (outputs, final states and input gradients, fp32), and every main model's forward
and backward on the GPU against the same weights on the CPU. Marked ``cuda``: skipped without a CUDA
device; ``make gpu-check`` runs them (``pytest -m cuda``).

Each check is a function of the device pair, so that it also runs CPU against CPU (see
``test_the_checks_themselves_run_on_the_cpu``): the code the GPU will run is exercised on every
machine, the GPU adds only the device."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nlteach import deep_memory as dm
from nlteach.cms import cms_in_context_chunked, cms_in_context_naive
from nlteach.memory import (
    delta_rule_chunked,
    delta_rule_naive,
    linear_attention_chunked,
    linear_attention_naive,
)
from nlteach.models import ModelConfig, build_model
from nlteach.titans import BOXES, self_modifying_titans_chunked, self_modifying_titans_naive

MAIN_MODELS = ("transformer", "titans", "hope", "hope-attention")
TOL = 1e-4  # fp32, GPU kernels (other reduction orders, TF32 off) against the CPU token loop
MODEL_TOL = 1e-3  # a whole model: many more reductions in a row


@pytest.fixture(autouse=True)
def no_tf32():
    """fp32 means fp32: TF32 matmuls (the default of some torch builds for convolutions) would add
    ~1e-3 relative error and hide real differences."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def _run(fn, leaves: dict, device: str, seed: int = 7):
    """``fn(**leaves on device)`` -> (its tensors flattened, the gradients of the leaves for fixed
    random upstream gradients), everything back on the CPU."""
    on = {n: (tuple(t.to(device).detach().requires_grad_() for t in x) if isinstance(x, tuple)
              else x.to(device).detach().requires_grad_()) for n, x in leaves.items()}
    outs = [t for t in _flatten(fn(**on)) if t.requires_grad]
    g = torch.Generator().manual_seed(seed)
    ups = [torch.randn(t.shape, generator=g, dtype=t.dtype).to(device) for t in outs]
    flat_leaves = list(_flatten(list(on.values())))
    grads = torch.autograd.grad(outs, flat_leaves, ups, allow_unused=True)
    return [t.detach().cpu() for t in outs], [None if x is None else x.cpu() for x in grads]


def _flatten(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _flatten(v)
    elif isinstance(x, (tuple, list)):
        for v in x:
            yield from _flatten(v)


def assert_close(test: tuple, ref: tuple, tol: float, what: str) -> None:
    (outs_t, grads_t), (outs_r, grads_r) = test, ref
    assert len(outs_t) == len(outs_r) and len(grads_t) == len(grads_r)
    for i, (a, b) in enumerate(zip(outs_t, outs_r, strict=True)):
        assert rel_rms(a, b) < tol, f"{what}: output {i}: rel. RMS {rel_rms(a, b):.2e}"
    for i, (a, b) in enumerate(zip(grads_t, grads_r, strict=True)):
        if b is None or not b.abs().max() > 0:
            continue
        assert a is not None and rel_rms(a, b) < tol, f"{what}: gradient {i}: rel. RMS {rel_rms(a, b):.2e}"


# -- the checks, one per mechanism: device under test vs the naive loop on the CPU -----------------

def check_delta_rule(device: str, gated: bool) -> None:
    g = torch.Generator().manual_seed(0)
    B, H, T, d = 2, 2, 150, 16  # T: no multiple of the chunk
    leaves = {"q": torch.randn(B, H, T, d, generator=g), "k": F.normalize(torch.randn(B, H, T, d, generator=g), dim=-1),
              "v": torch.randn(B, H, T, d, generator=g), "beta": torch.rand(B, H, T, generator=g),
              "initial_state": 0.1 * torch.randn(B, H, d, d, generator=g)}
    if gated:
        leaves["alpha"] = 0.9 + 0.1 * torch.rand(B, H, T, generator=g)

    def chunked(**x):
        return delta_rule_chunked(**x, chunk_size=32)

    ref = _run(delta_rule_naive, leaves, "cpu")
    assert_close(_run(chunked, leaves, device), ref, TOL, f"delta rule (gated={gated}) chunked on {device}")


def check_linear_attention(device: str) -> None:
    g = torch.Generator().manual_seed(1)
    B, H, T, d = 2, 2, 150, 16
    leaves = {"q": torch.randn(B, H, T, d, generator=g) / d**0.5, "k": torch.randn(B, H, T, d, generator=g) / d**0.5,
              "v": torch.randn(B, H, T, d, generator=g), "initial_state": 0.1 * torch.randn(B, H, d, d, generator=g)}

    def chunked(**x):
        return linear_attention_chunked(**x, chunk_size=32)

    assert_close(_run(chunked, leaves, device), _run(linear_attention_naive, leaves, "cpu"), TOL,
                 f"linear attention chunked on {device}")


def check_titans(device: str, hidden: int | None) -> None:
    g = torch.Generator().manual_seed(2)
    B, H, T, d = 2, 2, 37, 8
    leaves = {"q": F.normalize(torch.randn(B, H, T, d, generator=g), dim=-1),
              "k": F.normalize(torch.randn(B, H, T, d, generator=g), dim=-1),
              "v": torch.randn(B, H, T, d, generator=g),
              "lr": 0.05 + 0.4 * torch.rand(B, H, T, generator=g),
              "momentum": 0.9 * torch.rand(B, H, T, generator=g),
              "decay": 0.3 * torch.rand(B, H, T, generator=g),
              "params": dm.init_params(B, H, d, hidden=hidden, scale=0.7, generator=g)}

    def naive(**x):
        return dm.titans_naive(**x, chunk_size=8)

    def chunked(**x):
        return dm.titans_chunked(**x, chunk_size=8)

    assert_close(_run(chunked, leaves, device), _run(naive, leaves, "cpu"), TOL,
                 f"Titans memory (hidden={hidden}) chunked on {device}")


def check_self_modifying_titans(device: str) -> None:
    g = torch.Generator().manual_seed(3)
    B, H, T, d, hidden = 2, 2, 23, 4, 6
    r = lambda *s, scale=1.0: scale * torch.randn(*s, generator=g)  # noqa: E731
    leaves = {"u": r(B, H, T, d, scale=0.5), "q": F.normalize(r(B, H, T, d), dim=-1),
              "init": {b: (r(B, H, d, hidden), r(B, H, hidden, d, scale=0.3)) for b in BOXES},
              "readout": {"w_eta": r(H, d), "w_alpha": r(H, d), "b_eta": r(H) - 1, "b_alpha": r(H) + 2}}
    # _run moves tensors and tuples; the nested dicts are moved here
    kw = dict(chunk_size=5, proj_chunk_size=3, momentum=0.0, dgd=True, self_modify=True, eta_max=0.5)

    def split(x):
        init = {b: (x[f"S2_{b}"], x[f"S1_{b}"]) for b in BOXES}
        ro = {n: x[n] for n in ("w_eta", "w_alpha", "b_eta", "b_alpha")}
        return x["u"], x["q"], init, ro

    flat = {"u": leaves["u"], "q": leaves["q"], **leaves["readout"],
            **{f"S2_{b}": leaves["init"][b][0] for b in BOXES}, **{f"S1_{b}": leaves["init"][b][1] for b in BOXES}}

    # the outputs and final memories; without momentum the momentum states are the last step's tiny
    # difference products (~1e-10), compared in tests/test_titans.py with their own bound
    def naive(**x):
        o, (states, _) = self_modifying_titans_naive(*split(x), **kw)
        return o, states

    def chunked(**x):
        o, (states, _) = self_modifying_titans_chunked(*split(x), **kw)
        return o, states

    assert_close(_run(chunked, flat, device), _run(naive, flat, "cpu"), TOL,
                 f"self-modifying Titans chunked on {device}")


def check_in_context_cms(device: str, variant: str) -> None:
    g = torch.Generator().manual_seed(4)
    B, T, D, hidden, periods = 2, 23, 4, 6, (1, 4, 5)
    leaves = {"x": torch.randn(B, T, D, generator=g), "targets": torch.randn(B, T, D, generator=g)}
    for i in range(len(periods)):
        leaves[f"W_in{i}"] = torch.randn(B, hidden, D, generator=g) / D**0.5
        leaves[f"W_out{i}"] = torch.randn(B, D, hidden, generator=g) / hidden**0.5
    lr = [0.1 / (i + 1) for i in range(len(periods))]

    def call(fn):
        def run(**x):
            weights = [(x[f"W_in{i}"], x[f"W_out{i}"]) for i in range(len(periods))]
            return fn(x["x"], weights, periods, lr, targets=x["targets"], variant=variant)
        return run

    assert_close(_run(call(cms_in_context_chunked), leaves, device), _run(call(cms_in_context_naive), leaves, "cpu"),
                 TOL, f"in-context CMS ({variant}) chunked on {device}")


def check_model(device: str, name: str) -> None:
    """The model's logits, loss and every parameter's gradient on ``device`` vs the CPU, same weights."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=37, dim=32, n_layers=2, n_heads=2, chunk_size=8, proj_chunk_size=4, cms_periods=(2, 8))
    model = build_model(name, cfg)
    idx = torch.randint(0, 37, (2, 41), generator=torch.Generator().manual_seed(1))
    results = []
    for dev in ("cpu", device):
        m = build_model(name, cfg)
        m.load_state_dict(model.state_dict())
        m.to(dev)
        logits = m(idx[:, :-1].to(dev))
        loss = F.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten().to(dev))
        loss.backward()
        results.append((logits.detach().cpu(), loss.item(), {n: p.grad.cpu() for n, p in m.named_parameters()}))
    (l_ref, loss_ref, g_ref), (l_dev, loss_dev, g_dev) = results
    assert rel_rms(l_dev, l_ref) < MODEL_TOL, f"{name} logits on {device}: rel. RMS {rel_rms(l_dev, l_ref):.2e}"
    assert abs(loss_dev - loss_ref) < MODEL_TOL * abs(loss_ref)
    typical = torch.cat([g.flatten() for g in g_ref.values()]).pow(2).mean().sqrt()
    for n, gr in g_ref.items():  # each gradient against its own size, or a tenth of the typical one
        err = (g_dev[n] - gr).pow(2).mean().sqrt() / torch.maximum(gr.pow(2).mean().sqrt(), 0.1 * typical)
        assert err < MODEL_TOL, f"{name} gradient of {n} on {device}: {err.item():.2e}"


# -- the tests -------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.cuda
@needs_cuda
def test_delta_rule_on_cuda(gated):
    check_delta_rule("cuda", gated)


@pytest.mark.cuda
@needs_cuda
def test_linear_attention_on_cuda():
    check_linear_attention("cuda")


@pytest.mark.parametrize("hidden", [None, 12], ids=["linear", "mlp"])
@pytest.mark.cuda
@needs_cuda
def test_titans_memory_on_cuda(hidden):
    check_titans("cuda", hidden)


@pytest.mark.cuda
@needs_cuda
def test_self_modifying_titans_on_cuda():
    check_self_modifying_titans("cuda")


@pytest.mark.parametrize("variant", ["sequential", "independent"])
@pytest.mark.cuda
@needs_cuda
def test_in_context_cms_on_cuda(variant):
    check_in_context_cms("cuda", variant)


@pytest.mark.parametrize("name", MAIN_MODELS)
@pytest.mark.cuda
@needs_cuda
def test_model_forward_backward_on_cuda(name):
    check_model("cuda", name)


@pytest.mark.slow
def test_the_checks_themselves_run_on_the_cpu():
    """The checks above, CPU against CPU: the GPU tests cannot fail for a bug of their own."""
    for gated in (False, True):
        check_delta_rule("cpu", gated)
    check_linear_attention("cpu")
    check_titans("cpu", 12)
    check_self_modifying_titans("cpu")
    check_in_context_cms("cpu", "sequential")
    check_model("cpu", "hope")
