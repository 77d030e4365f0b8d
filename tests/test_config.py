import pytest
import torch

from nlteach import config


def test_default_preset_is_laptop(monkeypatch):
    monkeypatch.delenv("NLTEACH_SIZE", raising=False)
    assert config.get_preset() == "laptop"


@pytest.mark.parametrize("name", ["tiny", "laptop", "full", " TINY "])
def test_valid_presets(monkeypatch, name):
    monkeypatch.setenv("NLTEACH_SIZE", name)
    assert config.get_preset() == name.strip().lower()


def test_bad_preset_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("NLTEACH_SIZE", "huge")
    with pytest.raises(ValueError) as e:
        config.get_preset()
    msg = str(e.value)
    assert "NLTEACH_SIZE" in msg and "'huge'" in msg
    for valid in config.PRESETS:
        assert valid in msg


def test_by_preset_picks_the_active_value(monkeypatch):
    monkeypatch.setenv("NLTEACH_SIZE", "full")
    assert config.by_preset(tiny=1, laptop=2, full=3) == 3
    assert config.by_preset(tiny=1, laptop=2, full=3, preset="tiny") == 1


def test_device_selection():
    dev = config.get_device()
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert config.get_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            config.get_device("cuda")


def test_seed_everything_is_reproducible():
    g1 = config.seed_everything(3)
    a = torch.randn(4, generator=g1), torch.randn(4)
    g2 = config.seed_everything(3)
    b = torch.randn(4, generator=g2), torch.randn(4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="seed"):
        config.seed_everything(-1)
