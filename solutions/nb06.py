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


def dmgd_inner_step(params, params0, u, target, inner_lr, retention):
    w, W1, b1, w2 = params
    z = u @ W1.T + b1  # [N, H]
    s = torch.sigmoid(z)
    h = z * s  # silu(z)
    r = (u @ w + h @ w2 - target) / u.shape[0]  # dL/dm(u_i) for L = 1/2 mean_i (m(u_i) - target_i)^2
    dz = r[:, None] * w2[None, :] * (s * (1 + z * (1 - s)))  # back through w2 and silu'
    grads = (u.T @ r, dz.T @ u, dz.sum(0), h.T @ r)
    return tuple(p0 + retention * (p - p0) - inner_lr * g for p, p0, g in zip(params, params0, grads))
