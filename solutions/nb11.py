"""Solutions for notebook 11."""


def is_shuffle2(s: list[int]) -> bool:
    depth = [0, 0]  # open '(' and open '['
    for c in s:
        kind, closing = divmod(c, 2)  # 0 '(' 1 ')' 2 '[' 3 ']'
        depth[kind] += -1 if closing else 1
        if depth[kind] < 0:
            return False
    return depth == [0, 0]
