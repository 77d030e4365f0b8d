"""Solutions for notebook 03."""

import torch


def ut_transform(K, beta):
    C = K.shape[0]
    A = torch.tril(beta[:, None] * (K @ K.T), diagonal=-1)  # strictly lower part of diag(beta) K K^T
    eye = torch.eye(C, dtype=K.dtype)
    # (I + A) is unit lower-triangular: forward substitution solves (I + A) T = diag(beta).
    return torch.linalg.solve_triangular(eye + A, torch.diag(beta), upper=False)
