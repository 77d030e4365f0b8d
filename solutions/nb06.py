"""Solutions for notebook 06."""

import torch


def momentum_as_memory(grads, beta, eta):
    m = torch.zeros_like(grads[0])
    W = torch.zeros_like(grads[0])
    out = []
    for g in grads:
        m = beta * m - eta * g  # one GD step on L(m) = <m, g> from the decayed memory
        W = W + m  # the weights read the memory
        out.append(W)
    return torch.stack(out)


def newton_schulz_step(X, a, b, c):
    A = X @ X.T
    return a * X + (b * A + c * A @ A) @ X
