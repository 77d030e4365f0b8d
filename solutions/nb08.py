"""Solutions for notebook 08."""

import torch


def dgd_update(S: torch.Tensor, k: torch.Tensor, delta: torch.Tensor, eta: float, alpha: float) -> torch.Tensor:
    d = S.shape[0]
    projector = alpha * torch.eye(d, dtype=S.dtype) - eta * torch.outer(k, k)  # (alpha I - eta k k^T)
    return projector @ S - eta * torch.outer(k, delta)  # minus the gradient step eta k delta^T


def titans_token_step(states, u, q, readout, eta_max):
    silu = torch.nn.functional.silu

    def read(S2, S1, x):  # Eq. 89 in row form: M(x) = x + silu(x S2) S1
        return x + silu(x @ S2) @ S1

    def silu_prime(z):
        s = torch.sigmoid(z)
        return s * (1 + z * (1 - s))

    # Eqs. 83-85: generate from the states before the token
    k = read(*states["k"], u)
    k = k / k.norm()
    v = read(*states["v"], u)
    eta = eta_max * torch.sigmoid(read(*states["eta"], u) @ readout["w_eta"] + readout["b_eta"])
    alpha = torch.sigmoid(read(*states["alpha"], u) @ readout["w_alpha"] + readout["b_alpha"])
    o = read(*states["memory"], q)  # Eq. 88: read before the update
    vn = v / v.norm()  # choice (g): the memories make their targets from v / ||v||
    new = {}
    for box, (S2, S1) in states.items():
        z = k @ S2
        a = silu(z)
        r = read(S2, S1, k) - read(S2, S1, vn)  # M(k) - vhat, vhat = M(vn) (Eq. 86)
        delta = silu_prime(z) * (S1 @ r)  # d loss / d (k S2)
        ad = a - silu(vn @ S2)  # the second matrix's input, through both arguments
        S2_new = alpha * S2 - eta * torch.outer(k, k @ S2) - eta * torch.outer(k, delta)  # DGD
        S1_new = alpha * S1 - eta / (1 + ad @ ad) * torch.outer(ad, r)  # normalized step (C = 1)
        new[box] = (S2_new, S1_new)
    return o, new
