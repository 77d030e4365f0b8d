"""Solutions for notebook 05."""

import torch


def clock_due(periods, s):
    return tuple(s % p == 0 for p in periods)


def multi_frequency_sgd(W0, grad_fn, periods, lr, steps):
    W = W0.clone()
    acc = torch.zeros_like(W0)  # one accumulator per level (row)
    trajectory = []
    for s in range(1, steps + 1):  # steps are counted from 1
        acc = acc + grad_fn(s, W.clone())  # every level collects its gradient at its current weights
        for level, period in enumerate(periods):
            if s % period == 0:  # the level's clock fires: apply the sum, then start afresh
                W[level] = W[level] - lr * acc[level]
                acc[level] = 0
        trajectory.append(W.clone())
    return torch.stack(trajectory)
