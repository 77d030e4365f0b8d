"""Real data sets: a pinned registry, verified downloads, a local mirror, and loaders.

Every file the course uses is listed in ``nlteach/data_manifest.json`` with a pinned URL, its
sha256, size and license. :func:`fetch` returns a verified local path:

1. the cache (``$NLTEACH_DATA_DIR``, default ``<repo>/data`` for a source checkout, else
   ``~/.cache/nlteach``) if the file there has the right checksum;
2. otherwise a mirror folder ``$NLTEACH_DATA_MIRROR`` (same layout as the manifest paths), copied
   into the cache after verification;
3. otherwise the pinned URL, with retries.

Files are written to a temporary name in the destination folder and renamed into place only after
their checksum matches, so an interrupted download never leaves a partial file under the real
name; a corrupted file found in the cache is detected and replaced.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENV_MIRROR = "NLTEACH_DATA_MIRROR"
ENV_DATA_DIR = "NLTEACH_DATA_DIR"
_MANIFEST = Path(__file__).with_name("data_manifest.json")


class DataUnavailableError(RuntimeError):
    """A data file could not be obtained (offline, no mirror, or the mirror lacks it)."""


class ChecksumError(RuntimeError):
    """A file's sha256 does not match the pinned value."""


@dataclass(frozen=True)
class DataFile:
    path: str  # relative path, e.g. "clinc150/data_full.json"
    url: str
    sha256: str
    bytes: int
    license: str
    source: str


def registry() -> dict[str, DataFile]:
    """All pinned data files, keyed by their relative path."""
    entries = json.loads(_MANIFEST.read_text())
    return {e["path"]: DataFile(**e) for e in entries}


def sha256sum(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """Where verified files live: ``$NLTEACH_DATA_DIR``, the repo's ``data/``, or ``~/.cache/nlteach``."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    repo_data = Path(__file__).resolve().parent.parent / "data"
    if (repo_data / "README.md").exists():  # a source checkout
        return repo_data
    return Path.home() / ".cache" / "nlteach"


def _atomic_copy_verified(write, dest: Path, expected_sha: str, what: str) -> Path:
    """Write via ``write(fileobj)`` into a temp file beside ``dest``, verify, then rename into place."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:  # not an error of the download: retrying would not help
        raise DataUnavailableError(
            f"cannot write the data cache {dest.parent} ({e.strerror or e}); set {ENV_DATA_DIR} to a writable "
            f"folder (the cache is {cache_dir()})."
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        got = sha256sum(tmp)
        if got != expected_sha:
            raise ChecksumError(
                f"{what}: sha256 is {got}, expected {expected_sha} (file corrupted or changed upstream)."
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _download(url: str, dest: Path, sha: str, *, retries: int, timeout: float) -> Path:
    last: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return _atomic_copy_verified(
                    lambda f, r=resp: shutil.copyfileobj(r, f), dest, sha, f"download of {url}"
                )
        except (urllib.error.URLError, OSError, ChecksumError) as e:  # network or corrupt transfer
            last = e
            if attempt < retries:
                time.sleep(min(2.0**attempt, 10.0))
    raise DataUnavailableError(
        f"Could not download {url} after {retries} attempt(s): {last}.\n"
        f"If this machine is offline, put a copy of the data in a folder laid out like the manifest "
        f"(e.g. DIR/{dest.relative_to(dest.parent.parent)}) and run with "
        f"`export {ENV_MIRROR}=DIR`; or copy the verified file to {dest}."
    ) from last


def fetch(path: str, *, retries: int = 3, timeout: float = 60.0, offline: bool | None = None) -> Path:
    """Return a verified local copy of the registered file ``path`` (see the module docstring).

    ``offline=True`` (or ``NLTEACH_OFFLINE=1``) never touches the network.
    """
    files = registry()
    if path not in files:
        raise KeyError(f"path={path!r} is not in the data registry; known files: {sorted(files)}")
    entry = files[path]
    dest = cache_dir() / path
    if dest.exists():
        if sha256sum(dest) == entry.sha256:
            return dest
        dest.unlink()  # corrupted or partial: replace it below

    mirror = os.environ.get(ENV_MIRROR)
    if mirror:
        src = Path(mirror).expanduser() / path
        if not src.exists():
            raise DataUnavailableError(
                f"{ENV_MIRROR}={mirror} is set but {src} does not exist; the mirror must be laid out "
                f"like the manifest paths ({path})."
            )

        def copy(f, src=src):
            with open(src, "rb") as s:
                shutil.copyfileobj(s, f)

        return _atomic_copy_verified(copy, dest, entry.sha256, f"mirror file {src}")

    if offline is None:
        offline = os.environ.get("NLTEACH_OFFLINE", "") not in ("", "0")
    if offline:
        raise DataUnavailableError(
            f"{path} is not cached at {dest} and offline mode is on. Download it from {entry.url} "
            f"(sha256 {entry.sha256}) into that path, or set {ENV_MIRROR}=DIR to a folder holding it."
        )
    return _download(entry.url, dest, entry.sha256, retries=retries, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Loaders: plain Python/NumPy objects with the official splits.


def load_tinyshakespeare() -> dict[str, str]:
    """Tiny Shakespeare as text, split by position: first 90% train, next 5% val, last 5% test.

    The corpus has no official split; this one (contiguous, no shuffling, so no leakage of
    neighbouring lines across splits) is the course's and is used everywhere.
    """
    text = fetch("tinyshakespeare/input.txt").read_text(encoding="utf-8")
    n = len(text)
    a, b = int(0.90 * n), int(0.95 * n)
    return {"train": text[:a], "val": text[a:b], "test": text[b:]}


@dataclass
class TextClassification:
    """Texts and integer labels per split, plus the label names (index = label id)."""

    splits: dict[str, tuple[list[str], np.ndarray]]
    label_names: list[str]

    def __getitem__(self, split: str) -> tuple[list[str], np.ndarray]:
        return self.splits[split]


def load_clinc150(*, include_oos: bool = False) -> TextClassification:
    """CLINC150 ("data_full"): 150 in-scope intents, official train/val/test (100/20/30 per intent).

    Out-of-scope queries are dropped unless ``include_oos`` (then they get label ``150``, "oos").
    """
    raw = json.loads(fetch("clinc150/data_full.json").read_text(encoding="utf-8"))
    names = sorted({label for _, label in raw["train"]})
    index = {n: i for i, n in enumerate(names)}
    if include_oos:
        index["oos"] = len(names)
        names = names + ["oos"]
    splits = {}
    for split in ("train", "val", "test"):
        rows = list(raw[split]) + (list(raw[f"oos_{split}"]) if include_oos else [])
        texts = [t for t, _ in rows]
        labels = np.array([index[y] for _, y in rows], dtype=np.int64)
        splits[split] = (texts, labels)
    return TextClassification(splits, names)


def load_banking77(*, val_fraction: float = 0.1, seed: int = 0) -> TextClassification:
    """Banking77 with its official train/test split.

    The official release has no validation split; ``val`` is a stratified ``val_fraction`` of
    train chosen with ``seed`` (and removed from ``train``), so test stays untouched.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}.")
    names = json.loads(fetch("banking77/categories.json").read_text(encoding="utf-8"))
    index = {n: i for i, n in enumerate(names)}

    def read(split: str) -> tuple[list[str], np.ndarray]:
        with open(fetch(f"banking77/{split}.csv"), newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [r["text"] for r in rows], np.array([index[r["category"]] for r in rows], dtype=np.int64)

    train_x, train_y = read("train")
    test = read("test")
    rng = np.random.default_rng(seed)
    val_idx = []
    for c in range(len(names)):
        members = np.flatnonzero(train_y == c)
        k = int(round(val_fraction * len(members)))
        val_idx.extend(rng.choice(members, size=k, replace=False).tolist())
    is_val = np.zeros(len(train_y), dtype=bool)
    is_val[val_idx] = True
    splits = {
        "train": ([t for t, v in zip(train_x, is_val) if not v], train_y[~is_val]),
        "val": ([t for t, v in zip(train_x, is_val) if v], train_y[is_val]),
        "test": test,
    }
    return TextClassification(splits, list(names))


def load_digits_split(*, test_fraction: float = 0.25, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's bundled 8x8 digits (1,797 images; no download), as float32 in [0, 1].

    The set has no official split: a stratified ``test_fraction`` is held out with ``seed``.
    Returns ``{"train": (X[N, 64], y[N]), "test": (...)}``.
    """
    # deferred: scikit-learn takes ~6 s to import, and only this loader needs it
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        test[rng.choice(members, size=int(round(test_fraction * len(members))), replace=False)] = True
    return {"train": (x[~test], y[~test]), "test": (x[test], y[test])}
