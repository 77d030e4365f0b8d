"""Solutions for notebook 01."""

import torch


def hebbian_write(S, k, v):
    # d/dS of -<S^T k, v> is -k v^T; one gradient step of size 1 adds k v^T.
    return S + torch.outer(k, v)


def delta_write(S, k, v, beta):
    # d/dS of 1/2 ||S^T k - v||^2 is k (S^T k - v)^T; one step of size beta.
    error = S.T @ k - v  # [d_v]: what the memory returns minus what it should return
    return S - beta * torch.outer(k, error)


def gated_delta_rule(q, k, v, beta, alpha, S0):
    # one GD step of size beta_t on 1/2 ||S^T k_t - v_t||^2, taken from the decayed memory alpha_t S
    S, outputs = S0, []
    for t in range(k.shape[0]):
        S = alpha[t] * S  # forget first
        error = S.T @ k[t] - v[t]  # what the decayed memory returns for k_t, minus v_t
        S = S - beta[t] * torch.outer(k[t], error)
        outputs.append(S.T @ q[t])  # read after the write (inclusive)
    return torch.stack(outputs), S
