"""Solutions for notebook 09."""

import torch


def hope_block(x: torch.Tensor, mixer, norm1, norm2, cms_weights) -> torch.Tensor:
    x = x + mixer(norm1(x))  # self-modifying Titans as the sequence mixer (pre-norm, residual)
    u = norm2(x)
    y = u
    for W_in, W_out in cms_weights:  # Eq. 70: the CMS levels as a chain, fastest first
        y = y + torch.nn.functional.silu(y @ W_in.T) @ W_out.T
    return x + (y - u)  # only the CMS's increment goes into the residual stream
