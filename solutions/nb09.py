"""Solutions for notebook 09."""

import torch


def hope_block(x: torch.Tensor, mixer, norm1, norm2, cms_weights) -> torch.Tensor:
    x = x + mixer(norm1(x))  # self-modifying Titans as the sequence mixer (pre-norm, residual)
    u = norm2(x)
    y = u
    for W_in, W_out in cms_weights:  # Eq. 70: the CMS levels as a chain, fastest first
        y = y + torch.nn.functional.silu(y @ W_in.T) @ W_out.T
    return x + (y - u)  # only the CMS's increment goes into the residual stream


def cms_normalized_step(u, W_in, W_out, eta, C):
    # one step with error e moves the output (to first order) by -eta J e with
    # J = ||a||^2 I + ||u||^2 W_out D^2 W_out^T, D = diag(silu'(h)); ||J|| <= N below.
    h = W_in @ u
    s = torch.sigmoid(h)
    a = h * s  # silu(h)
    D = s * (1 + h * (1 - s))  # silu'(h)
    N = a @ a + (u @ u) * ((W_out * D) ** 2).sum()  # W_out * D scales column j by D_j: W_out diag(D)
    return eta / (C * (1 + N))
