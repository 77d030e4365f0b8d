"""Solutions for notebook 08."""

import torch


def dgd_update(S: torch.Tensor, k: torch.Tensor, delta: torch.Tensor, eta: float, alpha: float) -> torch.Tensor:
    d = S.shape[0]
    projector = alpha * torch.eye(d, dtype=S.dtype) - eta * torch.outer(k, k)  # (alpha I - eta k k^T)
    return projector @ S - eta * torch.outer(k, delta)  # minus the gradient step eta k delta^T
