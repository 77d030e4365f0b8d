"""Check the course in a real browser: a locked-down JupyterLab for tests, Chromium, image diffs.

``tests/test_browser.py`` drives Debian's Chromium (through Playwright) against a JupyterLab that
this module starts. The parts worth testing without a browser live here:

- :func:`find_chromium`: the system browser, or ``None`` (the test is then skipped with
  :data:`ENABLE_HINT`; it never downloads a browser);
- :func:`jupyter_lab`: a context manager that starts ``python -m jupyter lab`` on a free port of
  127.0.0.1 with a random token, a temporary config and temporary runtime, data, settings and
  IPython folders (nothing of the user's is read or written), and stops it and its kernels
  whatever happens;
- :func:`image_difference`: the fraction of pixels that differ between two PNG images, used to
  prove that a widget's plot was redrawn.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LOCALHOST = "127.0.0.1"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
ENABLE_HINT = (
    "Chromium not found. Install Debian's browser with `sudo apt-get install chromium` "
    "(`.ci/run` does this), or point NLTEACH_CHROMIUM at a Chromium binary; the test never "
    "downloads a browser."
)
# Headless, and off the network: no GPU, no QUIC, no first-run, sync, component or background fetches.
CHROMIUM_ARGS = (
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--metrics-recording-only",
    "--disable-dev-shm-usage",
)
# JupyterLab user settings for the test: every cell in the DOM, no news, no update check, no toasts.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
}
# Marks every process of one server (the server and its kernels) so that all can be found and stopped.
MARKER_VAR = "NLTEACH_BROWSER_CHECK_RUN"


def find_chromium(env: Mapping[str, str] | None = None) -> str | None:
    """Path of the system's Chromium, or ``None``. ``NLTEACH_CHROMIUM`` overrides the search."""
    env = os.environ if env is None else env
    override = env.get("NLTEACH_CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> list[str]:
    """IPv4/IPv6 addresses with a TCP socket listening on ``port`` (Linux /proc/net; [] elsewhere).

    Used to prove that the test server is bound to 127.0.0.1 only.
    """
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(addr_hex)
            # /proc stores each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append(str(ipaddress.ip_address(raw)))
    return found


def server_config(*, port: int, token: str, root_dir: Path) -> dict[str, Any]:
    """The Jupyter server/Lab configuration of the test server (token required, localhost only)."""
    if not token or len(token) < 16:
        raise ValueError(f"token must be a random string of at least 16 characters, got {token!r}.")
    if not 0 < port < 65536:
        raise ValueError(f"port must be in 1..65535, got {port}.")
    return {
        "ServerApp": {
            "ip": LOCALHOST,
            "port": port,
            "port_retries": 0,
            "open_browser": False,
            "root_dir": str(root_dir),
            "allow_remote_access": False,
            "allow_root": True,  # CI runs as root; the server is still bound to 127.0.0.1 only
            "terminals_enabled": False,
            "shutdown_no_activity_timeout": 900,  # a safety net should stop_process_group never run
        },
        "IdentityProvider": {"token": token},
        "LabApp": {
            "news_url": None,
            "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
            "extension_manager": "readonly",
            # window.jupyterapp: lets the test read kernel status and cell models, not just pixels
            "expose_app_in_browser": True,
        },
    }


@dataclass
class LabServer:
    """A running test JupyterLab: ``url("lab/tree/x.ipynb")`` gives a URL that logs in."""

    base_url: str
    port: int
    token: str
    root_dir: Path
    process: subprocess.Popen
    log_path: Path
    marker: str

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}{path}{sep}token={self.token}"

    def api(
        self, path: str, *, method: str = "GET", token: bool = True, timeout: float = 10
    ) -> Any:
        """Call the REST API (``path`` like ``"api/kernels"``); return the decoded JSON or None."""
        req = urllib.request.Request(self.base_url + path, method=method)
        if token:
            req.add_header("Authorization", f"token {self.token}")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None


def _write_settings(settings_dir: Path) -> None:
    for rel, values in LAB_SETTINGS.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


@contextmanager
def jupyter_lab(
    root_dir: Path,
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 120.0,
) -> Iterator[LabServer]:
    """Start JupyterLab on ``root_dir``; everything it writes goes under ``workdir``.

    ``env`` adds to (or, with an empty value, removes from) the environment of the server and so
    of its kernels. The server runs with this interpreter (the project's ``.venv``) in its own
    process group; on exit its kernels are shut down through the API, the group gets SIGTERM,
    then SIGKILL, and any process still carrying this run's marker is killed.
    """
    root_dir, workdir = Path(root_dir), Path(workdir)
    if not root_dir.is_dir():
        raise ValueError(f"root_dir must be an existing folder, got {root_dir}.")
    token = secrets.token_hex(24)
    port = free_port()
    marker = secrets.token_hex(8)
    dirs = {
        name: _private_dir(workdir / name)
        for name in ("config", "runtime", "data", "settings", "workspaces", "ipython")
    }
    (dirs["config"] / "jupyter_server_config.json").write_text(
        json.dumps(server_config(port=port, token=token, root_dir=root_dir), indent=2)
    )
    (dirs["config"] / "jupyter_server_config.json").chmod(0o600)
    _write_settings(dirs["settings"])

    server_env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
    server_env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
        JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
        JUPYTER_PLATFORM_DIRS="1",
        IPYTHONDIR=str(dirs["ipython"]),
        PYTHONUNBUFFERED="1",
        **{MARKER_VAR: marker},
    )
    for k, v in (env or {}).items():
        if v == "":
            server_env.pop(k, None)
        else:
            server_env[k] = v

    log_path = workdir / "jupyter-server.log"
    # ip/port/browser also on the command line (not secret); the token only in the 0600 config file.
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        f"--ServerApp.ip={LOCALHOST}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        "--no-browser",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=root_dir, env=server_env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    server = LabServer(f"http://{LOCALHOST}:{port}/", port, token, root_dir, proc, log_path, marker)
    try:
        _wait_until_ready(server, startup_timeout)
        yield server
    finally:
        stop_lab(server)


def _wait_until_ready(server: LabServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with code {server.process.returncode} before it was ready; "
                f"its log:\n{tail(server.log_path)}"
            )
        try:
            server.api("api/status", timeout=2)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.25)
    raise TimeoutError(
        f"JupyterLab not ready after {timeout:.0f} s; its log:\n{tail(server.log_path)}"
    )


def tail(path: Path, n_chars: int = 3000) -> str:
    """The end of a text file ('' if it does not exist)."""
    try:
        return Path(path).read_text(errors="replace")[-n_chars:]
    except OSError:
        return ""


def stop_lab(server: LabServer, timeout: float = 10.0) -> None:
    """Shut the kernels down through the API, then stop the server and anything it left behind."""
    if server.process.poll() is None:
        try:
            for kernel in server.api("api/kernels", timeout=5) or []:
                server.api(f"api/kernels/{kernel['id']}", method="DELETE", timeout=10)
        except (urllib.error.URLError, OSError, ValueError):
            pass  # the signals below still stop everything
    stop_process_group(server.process, timeout=timeout)
    kill_marked_processes(MARKER_VAR, server.marker)


def stop_process_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by ``proc`` (started with ``start_new_session=True``),
    wait up to ``timeout`` seconds, then SIGKILL whatever of the group is left."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None and pgid == proc.pid:  # never signal a group we do not lead
        _signal_group(pgid, signal.SIGTERM)
    elif proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    if pgid is not None and pgid == proc.pid:
        _signal_group(pgid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=timeout)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def marked_processes(var: str, value: str) -> list[int]:
    """Pids of this user's processes whose environment has ``var=value`` (Linux /proc; [] elsewhere)."""
    needle = f"{var}={value}".encode()
    pids = []
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        return pids
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def kill_marked_processes(var: str, value: str) -> list[int]:
    """SIGKILL each process marked with ``var=value`` (the kernels of one test server); return pids."""
    pids = marked_processes(var, value)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return pids


def decode_image(image: bytes | str) -> np.ndarray:
    """PNG bytes, or a ``data:image/png;base64,...`` URI, as an ``[H, W, C]`` float array."""
    import base64

    from matplotlib.image import imread

    if isinstance(image, str):
        head, sep, payload = image.partition(",")
        if not (sep and head.startswith("data:image/png") and head.endswith(";base64")):
            raise ValueError(
                f"image must be PNG bytes or a base64 PNG data URI, got {image[:40]!r}..."
            )
        image = base64.b64decode(payload)
    if not image.startswith(b"\x89PNG"):
        raise ValueError(f"image must be PNG data, got bytes starting {image[:8]!r}.")
    arr = imread(io.BytesIO(image), format="png")
    return arr[..., None] if arr.ndim == 2 else arr


def image_difference(a: bytes | str, b: bytes | str, *, tol: float = 1 / 255) -> float:
    """Fraction of pixels (0..1) whose value differs by more than ``tol`` in some channel.

    Images of different sizes count as completely different (1.0).
    """
    x, y = decode_image(a), decode_image(b)
    if x.shape[:2] != y.shape[:2]:
        return 1.0
    channels = min(x.shape[2], y.shape[2])
    changed = np.abs(x[..., :channels].astype(np.float64) - y[..., :channels]) > tol
    return float(changed.any(axis=-1).mean())
