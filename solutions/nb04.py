"""Solutions for notebook 04 (deep memory, Titans)."""

import torch


def momentum_decay(W0, S0, grads, theta, eta, alpha):
    W, S = W0, S0
    Ws, Ss = [], []
    for t in range(grads.shape[0]):
        S = eta[t] * S - theta[t] * grads[t]  # momentum: surprise that persists
        W = (1 - alpha[t]) * W + S  # forgetting gate, then the write
        Ws.append(W)
        Ss.append(S)
    return torch.stack(Ws), torch.stack(Ss)


def dual_chunk(q, k, v, W0, S0, theta, eta, alpha):
    C = q.shape[0]
    later = torch.arange(C)[:, None] > torch.arange(C)[None, :]  # m > l

    def segment_products(x):  # out[i, l] = prod_{l < m <= i} x_m, lower triangular
        X = torch.where(later, x[:, None], torch.ones((), dtype=x.dtype))
        return torch.cumprod(X, dim=0).tril()

    P = segment_products(eta)
    A = segment_products(1 - alpha)
    decay0 = torch.cumprod(1 - alpha, dim=0)  # A[i, 0]
    mu = A @ torch.cumprod(eta, dim=0)  # coefficient of S0 in W_i
    coef = (A @ P) * theta[None, :]  # coefficient of g_l in W_i
    E = k @ W0.T - v  # errors at the chunk-start weights
    return decay0[:, None] * (q @ W0.T) + mu[:, None] * (q @ S0.T) - (coef * (q @ k.T)) @ E
