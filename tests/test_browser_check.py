"""tools.browser_check without a browser: Chromium lookup, server config, process clean-up,
image comparison. (The browser itself is driven in tests/test_browser.py.)"""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from matplotlib.figure import Figure

from tools import browser_check as bc


def _png(pixels: np.ndarray) -> bytes:
    fig = Figure(figsize=(pixels.shape[1] / 100, pixels.shape[0] / 100), dpi=100)
    fig.figimage(pixels, cmap="gray", vmin=0, vmax=1)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


# ------------------------------------------------------------------------------ finding Chromium
def test_find_chromium_honours_the_override(tmp_path):
    exe = tmp_path / "chromium"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert bc.find_chromium({"NLTEACH_CHROMIUM": str(exe)}) == str(exe)


def test_find_chromium_override_that_is_not_executable_gives_none(tmp_path):
    assert bc.find_chromium({"NLTEACH_CHROMIUM": str(tmp_path / "missing")}) is None


def test_enable_hint_says_how_to_install():
    assert "apt-get install chromium" in bc.ENABLE_HINT


def test_chromium_flags_keep_it_headless_and_offline():
    for flag in ("--disable-background-networking", "--disable-component-update",
                 "--disable-quic", "--disable-sync", "--no-first-run"):  # fmt: skip
        assert flag in bc.CHROMIUM_ARGS


# --------------------------------------------------------------------------------- server config
def test_free_port_is_bindable():
    port = bc.free_port()
    with socket.socket() as s:
        s.bind((bc.LOCALHOST, port))


@pytest.mark.skipif(not os.path.isdir("/proc/net"), reason="needs Linux /proc/net")
def test_listening_addresses_sees_a_listening_socket():
    with socket.socket() as s:
        s.bind((bc.LOCALHOST, 0))
        port = s.getsockname()[1]
        assert bc.listening_addresses(port) == []  # bound, not yet listening
        s.listen()
        assert bc.listening_addresses(port) == ["127.0.0.1"]


def test_server_config_is_local_and_token_protected(tmp_path):
    cfg = bc.server_config(port=8899, token="x" * 32, root_dir=tmp_path)
    assert cfg["ServerApp"]["ip"] == "127.0.0.1"
    assert cfg["ServerApp"]["open_browser"] is False
    assert cfg["ServerApp"]["port_retries"] == 0
    assert cfg["ServerApp"]["allow_remote_access"] is False
    assert cfg["IdentityProvider"]["token"] == "x" * 32
    assert cfg["LabApp"]["news_url"] is None


@pytest.mark.parametrize("token", ["", "short"])
def test_server_config_refuses_a_weak_token(tmp_path, token):
    with pytest.raises(ValueError, match="token"):
        bc.server_config(port=8899, token=token, root_dir=tmp_path)


def test_server_config_refuses_a_bad_port(tmp_path):
    with pytest.raises(ValueError, match="port must be in 1..65535, got 70000"):
        bc.server_config(port=70000, token="x" * 32, root_dir=tmp_path)


def test_jupyter_lab_refuses_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="root_dir"):
        with bc.jupyter_lab(tmp_path / "nope", tmp_path / "work"):
            pass


# ----------------------------------------------------------------------------- process clean-up
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) is not alive
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
def test_stop_process_group_kills_a_group_that_ignores_sigterm():
    marker = f"test-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, **{bc.MARKER_VAR: marker})
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE,
                            env=env, start_new_session=True)  # fmt: skip
    child = int(proc.stdout.readline())
    assert sorted(bc.marked_processes(bc.MARKER_VAR, marker)) == sorted([proc.pid, child])
    t0 = time.monotonic()
    bc.stop_process_group(proc, timeout=1.0)
    assert time.monotonic() - t0 < 5
    assert proc.poll() is not None
    for _ in range(50):  # the child is reaped by init; give it a moment
        if not _alive(child):
            break
        time.sleep(0.05)
    assert not _alive(child)
    assert bc.kill_marked_processes(bc.MARKER_VAR, marker) == []
    proc.stdout.close()


# ----------------------------------------------------------------------------- image comparison
def test_image_difference_of_identical_images_is_zero():
    png = _png(np.zeros((20, 30)))
    assert bc.image_difference(png, png) == 0.0


def test_image_difference_counts_changed_pixels():
    a = np.zeros((20, 30))
    b = a.copy()
    b[:5, :6] = 1.0  # 30 of 600 pixels
    assert bc.image_difference(_png(a), _png(b)) == pytest.approx(30 / 600)


def test_image_difference_reads_data_uris():
    a, b = _png(np.zeros((10, 10))), _png(np.ones((10, 10)))
    uri = "data:image/png;base64," + base64.b64encode(b).decode()
    assert bc.image_difference(a, uri) == 1.0


def test_images_of_different_sizes_are_completely_different():
    assert bc.image_difference(_png(np.zeros((10, 10))), _png(np.zeros((10, 12)))) == 1.0


@pytest.mark.parametrize("bad", [b"GIF89a...", "data:image/jpeg;base64,AAAA", "not an image"])
def test_decode_image_rejects_what_is_not_png(bad):
    with pytest.raises(ValueError, match="PNG"):
        bc.decode_image(bad)
