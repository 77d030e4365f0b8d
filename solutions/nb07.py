"""Solutions for notebook 07."""

import torch


def in_context_block(x, targets, W_in, W_out, period, lr):
    acc_in, acc_out = torch.zeros_like(W_in), torch.zeros_like(W_out)
    ys = []
    for t in range(x.shape[0]):
        A = W_in.detach().requires_grad_()
        B = W_out.detach().requires_grad_()
        o = x[t] + B @ torch.nn.functional.silu(A @ x[t])  # read with the current weights
        ys.append(o.detach())
        loss = lr * 0.5 * ((o - targets[t]) ** 2).sum()
        g_in, g_out = torch.autograd.grad(loss, (A, B))
        acc_in, acc_out = acc_in + g_in, acc_out + g_out
        if (t + 1) % period == 0:  # Eq. 71: update every `period` tokens by the summed updates
            W_in, W_out = W_in - acc_in, W_out - acc_out
            acc_in, acc_out = torch.zeros_like(W_in), torch.zeros_like(W_out)
    return torch.stack(ys), (W_in, W_out)
