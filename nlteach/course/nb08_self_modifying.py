"""Notebook 08 (self-modifying Titans): a stream whose regime switches halfway, random initial
memories, and what the memories generate along one sequence (learning rate, retention, drift of
the keys and values) with its widget ``draw_self_modification``. The layer itself is
:mod:`nlteach.titans`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from nlteach.titans import BOXES, Memory, self_modifying_titans_chunked


def regime_stream(T: int, d: int, *, switch_at: int | None = None, noise: float = 0.3, seed: int = 0,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Inputs ``u [1, 1, T, d]``: noisy copies of a few unit prototype vectors of regime A, then (from
    ``switch_at``) of regime B. A stand-in for a text whose topic changes halfway."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(2, 4, d, generator=g, dtype=dtype)  # 2 regimes x 4 prototypes
    which = torch.randint(0, 4, (T,), generator=g)
    regime = torch.zeros(T, dtype=torch.long)
    if switch_at is not None:
        regime[switch_at:] = 1
    u = F.normalize(protos[regime, which], dim=-1) + noise * torch.randn(T, d, generator=g, dtype=dtype) / math.sqrt(d)
    return u[None, None]


def random_memories(H: int, d: int, hidden: int, *, scale: float = 0.5, seed: int = 0,
                    dtype: torch.dtype = torch.float64) -> tuple[dict[str, Memory], dict[str, torch.Tensor]]:
    """Random initial states ``[1, H, ...]`` for the five memories and readouts (eta ~ 0.3, alpha ~ 0.95)."""
    g = torch.Generator().manual_seed(seed)
    init = {b: (torch.randn(1, H, d, hidden, generator=g, dtype=dtype),
                scale * torch.randn(1, H, hidden, d, generator=g, dtype=dtype) / math.sqrt(hidden)) for b in BOXES}
    ro = {"w_eta": torch.randn(H, d, generator=g, dtype=dtype) / math.sqrt(d), "b_eta": torch.full((H,), -1.0, dtype=dtype),
          "w_alpha": torch.randn(H, d, generator=g, dtype=dtype) / math.sqrt(d), "b_alpha": torch.full((H,), 3.0, dtype=dtype)}
    return init, ro


@torch.no_grad()
def self_modification_trace(proj_chunk_size: int = 1, chunk_size: int = 8, *, T: int = 120, d: int = 8,
                            hidden: int = 16, eta_max: float = 0.5, seed: int = 0) -> dict:
    """Run one sequence through self-modifying Titans twice, with and without self-modification
    (same initial states), and return per token: ``eta``, ``alpha`` (self-modifying), the drift of
    the generated keys and values away from the static ones (``1 - cos``), and the same gates of
    the static run. The stream switches regime at T/2."""
    u = regime_stream(T, d, switch_at=T // 2, seed=seed)
    q = F.normalize(u, dim=-1)
    init, ro = random_memories(1, d, hidden, seed=seed + 1)
    kw = dict(chunk_size=chunk_size, proj_chunk_size=proj_chunk_size, eta_max=eta_max, return_generated=True)
    _, _, on = self_modifying_titans_chunked(u, q, init, ro, **kw)
    _, _, off = self_modifying_titans_chunked(u, q, init, ro, self_modify=False, **kw)

    def drift(a, b):
        return (1 - F.cosine_similarity(a, b, dim=-1))[0, 0].numpy()

    return {"eta": on["eta"][0, 0].numpy(), "alpha": on["alpha"][0, 0].numpy(),
            "eta_static": off["eta"][0, 0].numpy(), "alpha_static": off["alpha"][0, 0].numpy(),
            "key_drift": drift(on["k"], off["k"]), "value_drift": drift(on["v"], off["v"]),
            "switch_at": T // 2, "proj_chunk_size": proj_chunk_size, "chunk_size": chunk_size}


def draw_self_modification(fig, proj_chunk_size: int = 1, chunk_size: int = 8, eta_max: float = 0.5):
    """Widget of notebook 08: generated learning rate, retention and key/value drift along a sequence."""
    r = self_modification_trace(int(proj_chunk_size), int(chunk_size), eta_max=eta_max)
    t = np.arange(len(r["eta"]))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ax1.plot(t, r["eta"], color="C3", lw=1, label="eta_t (self-modifying)")
    ax1.plot(t, r["eta_static"], color="C3", lw=1, ls=":", label="eta_t (static projections)")
    ax1.plot(t, r["alpha"], color="C0", lw=1, label="alpha_t (self-modifying)")
    ax1.plot(t, r["alpha_static"], color="C0", lw=1, ls=":", label="alpha_t (static)")
    ax1.set_ylabel("generated gates")
    ax1.legend(fontsize=7, ncol=2, loc="center right")
    ax1.set_title(f"k/v/eta/alpha memories: chunk {r['proj_chunk_size']}; main memory: chunk {r['chunk_size']}",
                  fontsize=9)
    ax2.plot(t, r["key_drift"], color="C2", lw=1, label="keys: 1 - cos(k_t, static k_t)")
    ax2.plot(t, r["value_drift"], color="C1", lw=1, label="values: 1 - cos(v_t, static v_t)")
    for ax in (ax1, ax2):
        ax.axvline(r["switch_at"], color="gray", ls=":", lw=1)
    ax2.text(r["switch_at"], 0.95, " regime switches", transform=ax2.get_xaxis_transform(), va="top",
             color="gray", fontsize=8)
    ax2.set_xlabel("token t")
    ax2.set_ylabel("drift from the static projection")
    ax2.legend(fontsize=7, loc="upper left")
    return fig
