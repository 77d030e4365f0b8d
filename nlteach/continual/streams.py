"""Task streams for continual learning: class-incremental text and digits, permuted digits.

A :class:`Stream` is a list of :class:`Task` s, each with its own training and test tensors and the
classes it introduces. Four streams (``STREAMS``):

- ``"clinc150"``: class-incremental CLINC150, 150 intents in 15 tasks of 10 (out-of-scope dropped);
- ``"banking77"``: class-incremental Banking77, 77 intents in 7 tasks of 11;
- ``"split-digits"``: class-incremental 8x8 digits, 10 classes in 5 tasks of 2;
- ``"permuted-digits"``: domain-incremental digits, every task has all 10 classes, task k shows
  the 64 pixels in its own fixed random order (task 0 is the identity).

The class order (which intents form which task) is a permutation drawn from the run's seed, so
seeds differ in the stream as well as in the initial weights. Test data are the official test
splits (CLINC150's test, Banking77's test) and the fixed held-out quarter of digits from
:func:`nlteach.data.load_digits_split` (``seed=0`` there, whatever the run seed: the test images
never change). ``split="val"`` builds the same stream evaluated on a validation split instead
(CLINC150's official val, Banking77's seeded 10% of train, a fixed fifth of the digits' train
images, each then left out of training): the few hyper-parameters we tune (EWC's lambda, LwF's
temperature; runner.TUNING) were chosen there, never on test data.

**Text features, no pretrained model.** A query is turned into a bag of hashed character n-grams
(n = 1..4 inside word boundaries, scikit-learn's ``HashingVectorizer(analyzer="char_wb")``,
``n_buckets`` buckets, counts L2-normalized). The model then learns an embedding per bucket
(``nn.EmbeddingBag``, weighted sum), i.e. a fastText-style learned n-gram embedding. Why this:
hashing needs no vocabulary, so nothing is fitted on data of tasks the learner has not seen yet
(a vocabulary or IDF built from the full training set would leak future tasks); character
n-grams cope with typos and word forms in short queries; and it is cheap on a CPU. Stored per
example as padded ``(ids [N, L] int64, weights [N, L] float32)``, padding has weight 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from nlteach import data

STREAMS = ("clinc150", "banking77", "split-digits", "permuted-digits")
DEFAULT_TASKS = {"clinc150": 15, "banking77": 7, "split-digits": 5, "permuted-digits": 5}

Inputs = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # dense [N, D] or (ids [N, L], weights [N, L])


def take(x: Inputs, idx: torch.Tensor | np.ndarray | slice) -> Inputs:
    """Rows ``idx`` of dense inputs or of an ``(ids, weights)`` bag."""
    if isinstance(idx, np.ndarray):
        idx = torch.from_numpy(idx)
    if isinstance(x, tuple):
        return (x[0][idx], x[1][idx])
    return x[idx]


def concat(xs: list[Inputs]) -> Inputs:
    if isinstance(xs[0], tuple):
        return (torch.cat([x[0] for x in xs]), torch.cat([x[1] for x in xs]))
    return torch.cat(xs)


def to_device(x: Inputs, device: torch.device | str) -> Inputs:
    if isinstance(x, tuple):
        return (x[0].to(device), x[1].to(device))
    return x.to(device)


def n_rows(x: Inputs) -> int:
    return int(x[0].shape[0] if isinstance(x, tuple) else x.shape[0])


@dataclass
class Task:
    """One task: the classes it introduces and its data (labels are global class ids)."""

    classes: tuple[int, ...]
    x_train: Inputs
    y_train: torch.Tensor  # [N] int64
    x_test: Inputs
    y_test: torch.Tensor


@dataclass
class Stream:
    name: str
    scenario: str  # "class" (class-incremental) or "domain" (domain-incremental)
    n_classes: int
    input_kind: str  # "bag" (hashed n-gram ids + weights) or "dense"
    input_dim: int  # number of hash buckets, or the dense feature size
    tasks: list[Task]
    class_order: list[int] = field(default_factory=list)

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def seen_classes(self, t: int) -> list[int]:
        """The classes a single head may predict after learning tasks 0..t (all, in domain-IL)."""
        if self.scenario == "domain":
            return list(range(self.n_classes))
        return sorted(c for task in self.tasks[: t + 1] for c in task.classes)

    def seen_mask(self, t: int) -> torch.Tensor:
        """Boolean ``[n_classes]``, True for :meth:`seen_classes`."""
        m = torch.zeros(self.n_classes, dtype=torch.bool)
        m[self.seen_classes(t)] = True
        return m

    def to(self, device: torch.device | str) -> Stream:
        for t in self.tasks:
            t.x_train, t.x_test = to_device(t.x_train, device), to_device(t.x_test, device)
            t.y_train, t.y_test = t.y_train.to(device), t.y_test.to(device)
        return self


# ---------------------------------------------------------------------------------------------
# Features


def hashed_ngrams(texts: list[str], n_buckets: int, ngram_range: tuple[int, int] = (1, 4)
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Bag of hashed character n-grams: ``(ids [N, L] int64, weights [N, L] float32)``, rows L2-normalized."""
    # deferred: scikit-learn takes seconds to import, and only the text streams need it
    from sklearn.feature_extraction.text import HashingVectorizer

    if not isinstance(n_buckets, int) or n_buckets < 2:
        raise ValueError(f"n_buckets must be an int >= 2, got {n_buckets!r}.")
    vec = HashingVectorizer(analyzer="char_wb", ngram_range=ngram_range, n_features=n_buckets,
                            alternate_sign=False, norm="l2", lowercase=True)
    m = vec.transform(texts).tocsr()
    m.sort_indices()
    counts = np.diff(m.indptr)
    L = max(1, int(counts.max()) if len(counts) else 1)
    ids = np.zeros((len(texts), L), dtype=np.int64)
    w = np.zeros((len(texts), L), dtype=np.float32)
    rows = np.repeat(np.arange(len(texts)), counts)  # the row of every stored n-gram
    cols = np.arange(m.nnz) - m.indptr[rows]  # its position inside the row
    ids[rows, cols] = m.indices
    w[rows, cols] = m.data
    return torch.from_numpy(ids), torch.from_numpy(w)


def hashed_ngram_sequence(texts: list[str], n_buckets: int, max_len: int, ngram_range: tuple[int, int] = (1, 4)
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Hashed character n-grams *in reading order*: ``(ids [N, L, n] int64, mask [N, L] float32)``.

    The text's UTF-8 bytes (lowercased, the first ``max_len``) are the positions; position t holds
    the bucket ids of the n-grams that *end* at t, for every n in ``ngram_range`` (bytes before the
    start count as byte 0, a start marker). Summing position t's embeddings gives a fastText-style
    token vector that a sequence model reads left to right. ``L = min(max_len, longest text)``;
    ``mask`` is 1 on real bytes, 0 on padding (padding ids are 0). The hash is a fixed polynomial
    hash (no salt), so ids are the same in every run and on every machine.
    """
    if not isinstance(n_buckets, int) or n_buckets < 2:
        raise ValueError(f"n_buckets must be an int >= 2, got {n_buckets!r}.")
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}.")
    lo, hi = ngram_range
    raw = [t.lower().encode("utf-8")[:max_len] for t in texts]
    lens = np.array([len(r) for r in raw], dtype=np.int64)
    L = max(1, int(lens.max()) if len(raw) else 1)
    pad = hi - 1  # leading zeros: the start marker for n-grams that begin before the text
    b = np.zeros((len(raw), pad + L), dtype=np.uint64)
    for i, r in enumerate(raw):
        b[i, pad:pad + len(r)] = np.frombuffer(r, dtype=np.uint8)
    ids = np.zeros((len(raw), L, hi - lo + 1), dtype=np.int64)
    P, MIX = np.uint64(1099511628211), np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps around: that is the hash
        for j, n in enumerate(range(lo, hi + 1)):
            h = np.full((len(raw), L), np.uint64(n * 7919 + 1), dtype=np.uint64)
            for m in range(n):  # bytes t-n+1 .. t, oldest first
                h = h * P + b[:, pad - n + 1 + m: pad - n + 1 + m + L] + np.uint64(1)
            h = (h ^ (h >> np.uint64(29))) * MIX
            ids[:, :, j] = (h >> np.uint64(11)) % np.uint64(n_buckets)
    mask = (np.arange(L)[None, :] < lens[:, None]).astype(np.float32)
    ids *= mask[:, :, None].astype(np.int64)
    return torch.from_numpy(ids), torch.from_numpy(mask)


def _splits(dataset: str, split: str) -> tuple[tuple[list[str], np.ndarray], tuple[list[str], np.ndarray], int]:
    """(train texts/labels, evaluation texts/labels, number of classes) of a text data set.

    ``split="test"``: the official train split (Banking77: all of it) and the official test split.
    ``split="val"`` (for tuning hyper-parameters): CLINC150's official train and val splits;
    Banking77's seeded 90/10 split of the official train split (``data.load_banking77(seed=0)``).
    """
    ds = data.load_clinc150() if dataset == "clinc150" else data.load_banking77()
    train = ds["train"]
    if split == "test" and dataset == "banking77":  # the model sees the whole official train split
        (t, y), (vt, vy) = ds["train"], ds["val"]
        train = (list(t) + list(vt), np.concatenate([y, vy]))
    return (list(train[0]), np.asarray(train[1])), (list(ds[split][0]), np.asarray(ds[split][1])), len(ds.label_names)


@functools.lru_cache(maxsize=8)
def _text_features(dataset: str, n_buckets: int, split: str = "test", features: str = "bag",
                   max_len: int = 64) -> tuple:
    """Featurized train and evaluation splits (cached: building them takes about a second)."""
    train, held_out, n_classes = _splits(dataset, split)
    out = []
    for texts, labels in (train, held_out):
        x = hashed_ngrams(texts, n_buckets) if features == "bag" else hashed_ngram_sequence(texts, n_buckets, max_len)
        out.append((x, torch.from_numpy(labels)))
    return tuple(out), n_classes


def _digits(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits train/evaluation arrays. ``split="val"``: a stratified fifth of the train images
    (fixed seed) is the evaluation set and the rest the training set; the test images are never used."""
    d = data.load_digits_split(seed=0)
    (x_tr, y_tr), (x_te, y_te) = d["train"], d["test"]
    if split == "val":
        rng = np.random.default_rng(2024)
        val = np.zeros(len(y_tr), dtype=bool)
        for c in np.unique(y_tr):
            members = np.flatnonzero(y_tr == c)
            val[rng.choice(members, size=int(round(0.2 * len(members))), replace=False)] = True
        x_tr, y_tr, x_te, y_te = x_tr[~val], y_tr[~val], x_tr[val], y_tr[val]
    return x_tr, y_tr, x_te, y_te


def _cap_per_class(y: np.ndarray, cap: int | None) -> np.ndarray:
    """Indices keeping the first ``cap`` examples of every class (all of them if ``cap`` is None)."""
    if cap is None:
        return np.arange(len(y))
    keep = np.concatenate([np.flatnonzero(y == c)[:cap] for c in np.unique(y)])
    return np.sort(keep)


# ---------------------------------------------------------------------------------------------
# Streams


def class_order(n_classes: int, seed: int) -> list[int]:
    """The seeded permutation of class ids that defines which classes form which task."""
    return np.random.default_rng([seed, 7919]).permutation(n_classes).tolist()


def split_classes(order: list[int], n_tasks: int) -> list[tuple[int, ...]]:
    """Consecutive equal chunks of ``order``; ``len(order)`` must be divisible by ``n_tasks``."""
    if n_tasks < 1 or len(order) % n_tasks:
        raise ValueError(f"n_tasks={n_tasks} must divide the number of classes ({len(order)}).")
    k = len(order) // n_tasks
    return [tuple(order[i * k:(i + 1) * k]) for i in range(n_tasks)]


def make_stream(dataset: str, seed: int, *, n_tasks: int | None = None, n_buckets: int = 8192,
                max_train_per_class: int | None = None, max_test_per_class: int | None = None,
                split: str = "test", text_features: str = "bag", max_len: int = 64) -> Stream:
    """Build the task stream ``dataset`` (one of ``STREAMS``) for ``seed``.

    ``n_tasks`` defaults to ``DEFAULT_TASKS[dataset]``; for class-incremental streams it must
    divide the number of classes. With ``n_tasks`` smaller than the default on split digits, the
    classes are still split evenly (e.g. 2 tasks of 5). ``max_*_per_class`` keep only the first
    examples of each class (used by the tiny preset), the same ones for every seed.

    ``split="val"`` evaluates on a validation split instead of the test split (for tuning; see
    :func:`_splits` and :func:`_digits`). ``text_features``: ``"bag"`` (hashed n-gram bag,
    ``input_kind="bag"``) or ``"sequence"`` (hashed n-grams in reading order, at most ``max_len``
    bytes, ``input_kind="seq"``, for sequence models such as the HOPE learner). Digits are always
    the 64 pixels (``"dense"``); a sequence model reads them as 8 rows of 8.
    """
    if dataset not in STREAMS:
        raise ValueError(f"dataset must be one of {STREAMS}, got {dataset!r}.")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}.")
    if text_features not in ("bag", "sequence"):
        raise ValueError(f"text_features must be 'bag' or 'sequence', got {text_features!r}.")
    n_tasks = DEFAULT_TASKS[dataset] if n_tasks is None else n_tasks
    if dataset in ("clinc150", "banking77"):
        ((x_tr, y_tr), (x_te, y_te)), n_classes = _text_features(dataset, n_buckets, split, text_features, max_len)
        kind, dim = ("bag" if text_features == "bag" else "seq"), n_buckets
    else:
        x_tr, y_tr, x_te, y_te = (torch.from_numpy(a) for a in _digits(split))
        n_classes, kind, dim = 10, "dense", 64
    keep_tr = _cap_per_class(y_tr.numpy(), max_train_per_class)
    keep_te = _cap_per_class(y_te.numpy(), max_test_per_class)
    x_tr, y_tr = take(x_tr, keep_tr), y_tr[keep_tr]
    x_te, y_te = take(x_te, keep_te), y_te[keep_te]

    if dataset == "permuted-digits":
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1, got {n_tasks}.")
        rng = np.random.default_rng([seed, 104729])
        perms = [np.arange(dim)] + [rng.permutation(dim) for _ in range(n_tasks - 1)]
        tasks = [Task(tuple(range(n_classes)), x_tr[:, p], y_tr, x_te[:, p], y_te) for p in perms]
        return Stream(dataset, "domain", n_classes, kind, dim, tasks, list(range(n_classes)))

    order = class_order(n_classes, seed)
    tasks = []
    for cls in split_classes(order, n_tasks):
        c = torch.tensor(cls)
        tr = torch.isin(y_tr, c).nonzero().squeeze(1)
        te = torch.isin(y_te, c).nonzero().squeeze(1)
        tasks.append(Task(tuple(int(v) for v in cls), take(x_tr, tr), y_tr[tr], take(x_te, te), y_te[te]))
    return Stream(dataset, "class", n_classes, kind, dim, tasks, order)


def first_tasks(stream: Stream, k: int) -> Stream:
    """The stream cut to its first ``k`` tasks (e.g. the A -> B -> C story of notebook 10)."""
    if not 1 <= k <= stream.n_tasks:
        raise ValueError(f"k must be in [1, {stream.n_tasks}], got {k}.")
    return Stream(stream.name, stream.scenario, stream.n_classes, stream.input_kind, stream.input_dim,
                  stream.tasks[:k], stream.class_order)
