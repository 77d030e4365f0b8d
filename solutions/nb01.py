"""Solutions for notebook 01."""

import torch


def hebbian_write(S, k, v):
    # d/dS of -<S^T k, v> is -k v^T; one gradient step of size 1 adds k v^T.
    return S + torch.outer(k, v)


def delta_write(S, k, v, beta):
    # d/dS of 1/2 ||S^T k - v||^2 is k (S^T k - v)^T; one step of size beta.
    error = S.T @ k - v  # [d_v]: what the memory returns minus what it should return
    return S - beta * torch.outer(k, error)
