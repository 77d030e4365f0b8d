import hashlib
import urllib.error

import numpy as np
import pytest

from nlteach import data

SMALL = "banking77/categories.json"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLTEACH_DATA_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_registry_matches_pinned_manifest():
    reg = data.registry()
    assert {"tinyshakespeare/input.txt", "clinc150/data_full.json", "banking77/train.csv",
            "banking77/test.csv", SMALL} <= set(reg)
    for f in reg.values():
        assert f.url.startswith("https://") and len(f.sha256) == 64 and f.license


def test_mirror_copy_is_verified_and_cached(cache, data_mirror, monkeypatch):
    monkeypatch.setenv("NLTEACH_DATA_MIRROR", str(data_mirror))
    path = data.fetch(SMALL)
    assert path == cache / SMALL
    assert data.sha256sum(path) == data.registry()[SMALL].sha256
    assert not list(path.parent.glob(".*.part"))  # no temp file left behind


def test_checksum_mismatch_in_mirror_is_an_error(cache, tmp_path, monkeypatch):
    bad = tmp_path / "mirror" / SMALL
    bad.parent.mkdir(parents=True)
    bad.write_text('["not", "the", "real", "file"]')
    monkeypatch.setenv("NLTEACH_DATA_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(data.ChecksumError, match="sha256"):
        data.fetch(SMALL)
    assert not (cache / SMALL).exists()  # nothing written under the real name


def test_corrupted_cache_file_is_replaced(cache, data_mirror, monkeypatch):
    monkeypatch.setenv("NLTEACH_DATA_MIRROR", str(data_mirror))
    dest = cache / SMALL
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"partial download")
    path = data.fetch(SMALL)
    assert data.sha256sum(path) == data.registry()[SMALL].sha256


def test_offline_without_mirror_says_what_to_do(cache, monkeypatch):
    monkeypatch.delenv("NLTEACH_DATA_MIRROR", raising=False)

    def no_network(*a, **k):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    monkeypatch.setattr(data.time, "sleep", lambda s: None)
    with pytest.raises(data.DataUnavailableError) as e:
        data.fetch(SMALL, retries=2)
    msg = str(e.value)
    assert "NLTEACH_DATA_MIRROR" in msg and "2 attempt" in msg
    with pytest.raises(data.DataUnavailableError, match="offline"):
        data.fetch(SMALL, offline=True)


def test_download_retries_then_verifies(cache, data_mirror, monkeypatch):
    """Simulated network: first attempt fails, second serves the right bytes."""
    monkeypatch.delenv("NLTEACH_DATA_MIRROR", raising=False)
    payload = (data_mirror / SMALL).read_bytes()
    calls = []

    class Resp:
        def __init__(self, b):
            import io
            self._f = io.BytesIO(b)

        def read(self, n=-1):
            return self._f.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def flaky(url, timeout):
        calls.append(url)
        if len(calls) == 1:
            raise urllib.error.URLError("temporary failure")
        return Resp(payload)

    monkeypatch.setattr(data.urllib.request, "urlopen", flaky)
    monkeypatch.setattr(data.time, "sleep", lambda s: None)
    path = data.fetch(SMALL)
    assert len(calls) == 2 and hashlib.sha256(path.read_bytes()).hexdigest() == data.registry()[SMALL].sha256


def test_unknown_file_is_a_clear_error():
    with pytest.raises(KeyError, match="not in the data registry"):
        data.fetch("nope.txt")


def test_loaders_return_official_splits(cache, data_mirror, monkeypatch):
    monkeypatch.setenv("NLTEACH_DATA_MIRROR", str(data_mirror))
    shakespeare = data.load_tinyshakespeare()
    assert sum(len(v) for v in shakespeare.values()) == 1115394
    clinc = data.load_clinc150()
    assert len(clinc.label_names) == 150
    assert [len(clinc[s][0]) for s in ("train", "val", "test")] == [15000, 3000, 4500]
    assert np.bincount(clinc["test"][1]).tolist() == [30] * 150
    bank = data.load_banking77()
    assert len(bank.label_names) == 77
    assert len(bank["test"][0]) == 3080 and len(bank["train"][0]) + len(bank["val"][0]) == 10003
    digits = data.load_digits_split()
    assert digits["train"][0].shape[1] == 64 and len(digits["train"][1]) + len(digits["test"][1]) == 1797
