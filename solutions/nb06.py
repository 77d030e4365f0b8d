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


def dgd_batch_step(W, X, U, lr):
    # gradient of 1/(2N) sum ||W x_n - u_n||^2 + 1/(2 lr) ||W - W_t||^2 set to zero:
    # (W X^T - U^T) X / N + (W - W_t) / lr = 0  <=>  W (I + c X^T X) = W_t + c U^T X,  c = lr / N
    c = lr / X.shape[0]
    A = torch.eye(X.shape[1], dtype=X.dtype) + c * X.T @ X  # [in, in], symmetric positive definite
    rhs = W + c * U.T @ X  # [out, in]
    return torch.linalg.solve(A, rhs.T).T  # A symmetric: W_new A = rhs  <=>  A W_new^T = rhs^T
