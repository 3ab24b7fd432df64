"""Fixtures for the real-browser test: a JupyterLab on 127.0.0.1 and a headless Chromium.

Not collected by `make test` (which runs `pytest tests` and nbval); run with `make test-browser`.
A missing browser or Playwright FAILS the test with one line saying how to install it, because
CI must really run it rather than skip it.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHAPTER = REPO / "notebooks" / "01_data_preparation.ipynb"
SCREENSHOTS = REPO / "outputs" / "browser"
# Debian's headless build first: Playwright's own download cannot reach its CDN here.
BROWSERS = ("chromium-headless-shell", "chromium")
INSTALL_HINT = ("install it with `make test-browser` (as root it runs `apt-get install -y chromium-headless-shell`), "
                "or point LOMIX_CHROMIUM at a Chromium binary")
# Without the background-networking flags Chromium calls Google's update and sync services; the
# resolver rule makes every other host unresolvable, so a stray request fails fast instead of hanging.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
# JupyterLab settings that keep the page quiet and deterministic: no news or update check (each
# would ask a website), no extension manager (it queries PyPI), and every cell attached to the
# DOM so the widget's output is there to find wherever it is scrolled. The preferred kernel starts
# without the "Select Kernel" dialog that JupyterLab otherwise shows on opening the notebook.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    "@jupyterlab/extensionmanager-extension/plugin.jupyterlab-settings": {"enabled": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                   "autoStartDefaultKernel": True},
}
SERVER_START_S = 90


def _fail(message: str):
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    explicit = os.environ.get("LOMIX_CHROMIUM")
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            _fail(f"LOMIX_CHROMIUM={explicit} is not an executable file; {INSTALL_HINT}")
        return explicit
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    _fail(f"no headless Chromium found (looked for {', '.join(BROWSERS)} on PATH); {INSTALL_HINT}")


@pytest.fixture(scope="session")
def sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _fail("Python Playwright is not installed; run `make test-browser` "
              "(or `.venv/bin/python -m pip install -e \".[browser]\"`)")
    return sync_playwright


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM lets the server shut its kernels down; whatever is left of its group gets SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: the kernels it started, nothing else
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def jupyterlab(tmp_path_factory):
    """A JupyterLab on 127.0.0.1 at a free port with a random token, serving a temporary folder
    that holds a copy of the chapter. Yields ``(base_url, token, root)``; always shut down."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root, settings, runtime = base / "root", base / "settings", base / "runtime"
    root.mkdir()
    shutil.copy2(CHAPTER, root / CHAPTER.name)
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(24)
    env = dict(os.environ)
    # The kernel inherits this: real widgets (no LOMIX_HEADLESS) and the profile that runs in seconds.
    env.pop("LOMIX_HEADLESS", None)
    env.update(LOMIX_PROFILE="smoke", JUPYTER_RUNTIME_DIR=str(runtime),
               MPLBACKEND="module://matplotlib_inline.backend_inline")
    command = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--ServerApp.open_browser=False", f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={base / 'workspaces'}", "--LabApp.news_url=None",
               "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False",
               # CI runs as root; the server is bound to 127.0.0.1 behind a random token.
               "--ServerApp.allow_root=True"]
    log_path = base / "jupyterlab.log"
    log = log_path.open("w")
    process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                _fail(f"JupyterLab exited with {process.returncode} before answering; log:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/api/status?token={token}", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                _fail(f"JupyterLab did not answer on {base_url} within {SERVER_START_S} s; log:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base_url, token, root
    finally:
        _stop(process)
        log.close()
        print(f"\nJupyterLab log: {log_path}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(request, sync_playwright, chromium_path, jupyterlab):
    """A Chromium page that may only talk to the JupyterLab above: every request to another
    origin is aborted and listed in ``page.blocked``."""
    base_url = jupyterlab[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS,
                                    timeout=60_000)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, service_workers="block")
            blocked: list[str] = []

            def guard(route):
                url = route.request.url
                if url.startswith(base_url + "/") or url.startswith("data:") or url.startswith("blob:"):
                    route.continue_()
                else:
                    blocked.append(url)
                    route.abort()

            context.route("**/*", guard)
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.blocked = blocked
            yield page
            report = getattr(request.node, "report_call", None)
            if report is not None and report.failed:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOTS / "failure.png"))
                print(f"\nscreenshot of the page when the test failed: {SCREENSHOTS / 'failure.png'}")
        finally:
            browser.close()
