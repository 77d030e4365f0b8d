"""Solutions for notebook 11."""

import torch


def is_shuffle2(s: list[int]) -> bool:
    depth = [0, 0]  # open '(' and open '['
    for c in s:
        kind, closing = divmod(c, 2)  # 0 '(' 1 ')' 2 '[' 3 ']'
        depth[kind] += -1 if closing else 1
        if depth[kind] < 0:
            return False
    return depth == [0, 0]


def mqar_recall(inputs, n_keys, n_values):
    T = inputs.shape[0]
    key0, value0 = 1, 1 + n_keys
    S = torch.zeros(n_keys, n_values, dtype=torch.float64)  # the recurrent state: one-hot keys -> values
    out = torch.full((T,), -100, dtype=torch.long)
    for i in range(T):  # one step per token, reading only tokens 0..i
        if i < T // 2 and i % 2 == 1:  # a value: write the pair (previous token, this token)
            k = torch.zeros(n_keys, dtype=torch.float64)
            k[int(inputs[i - 1]) - key0] = 1.0
            v = torch.zeros(n_values, dtype=torch.float64)
            v[int(inputs[i]) - value0] = 1.0
            S = S + torch.outer(k, v - S.T @ k)  # the delta rule, beta = 1: exact for one-hot keys
        elif i >= T // 2 and i % 2 == 0:  # a query key: answer now
            k = torch.zeros(n_keys, dtype=torch.float64)
            k[int(inputs[i]) - key0] = 1.0
            out[i] = value0 + int(torch.argmax(S.T @ k))
    return out
