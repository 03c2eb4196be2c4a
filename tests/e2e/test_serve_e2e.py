"""`srrun serve` as a real process under waitress, with the bundled default model: the page
driven in headless Chromium (Debian's chromium and chromium-driver, through Selenium: no browser
download), and a bounded load test on loopback. Skipped where Chromium is absent, except in CI
(CI=true), where .ci/run installs it and a skip would hide a failure."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("flask", reason="the [serve] extra (flask, waitress) is not installed")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import serve_load
from conftest import image_set

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def server():
    port = serve_load.free_port()
    proc = serve_load.start_server(["--queue", "8", "--workers", "1"], port)  # bundled default
    yield f"http://127.0.0.1:{port}", proc
    serve_load.stop_server(proc)


@pytest.fixture
def browser(tmp_path: Path):
    have = Path(CHROMIUM).exists() and Path(DRIVER).exists()
    if not have and os.environ.get("CI") != "true":
        pytest.skip("needs Debian's chromium and chromium-driver (apt install chromium "
                    "chromium-driver; .ci/run installs them)")
    selenium = pytest.importorskip("selenium", reason="selenium is in the [test] extra")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    del selenium
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1100,1000",
                f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, predicate, timeout: float = 120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(predicate)


def test_page_upscales_in_chromium(server, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    base, _ = server
    src = Path(os.environ.get("SERVE_SCREENSHOT_INPUT", tmp_path / "photo.png")).resolve()
    if not src.is_file():
        arr = np.zeros((48, 64, 3), np.uint8)
        arr[..., 0] = np.linspace(0, 255, 64)[None, :]
        arr[12:36, 16:48] = (40, 160, 90)
        Image.fromarray(arr).save(src)
    w, h = Image.open(src).size
    d = browser
    d.get(base + "/")
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"), 30)
    d.find_element(By.ID, "file").send_keys(str(src))
    _wait(d, lambda d: d.find_element(By.ID, "go").is_enabled(), 10)
    assert d.execute_script("return document.getElementById('preview').naturalWidth") == w
    d.find_element(By.ID, "go").click()
    _wait(d, lambda d: d.find_element(By.ID, "result").is_displayed())
    _wait(d, lambda d: d.execute_script(
        "const i = document.getElementById('after'); return i.complete && i.naturalWidth"), 30)
    size = d.execute_script("const i = document.getElementById('after');"
                            "return [i.naturalWidth, i.naturalHeight]")
    assert size == [4 * w, 4 * h]
    href = d.find_element(By.ID, "download").get_attribute("href")
    assert href.startswith(base + "/api/jobs/") and href.endswith("/result?download=1")
    shot = Path(os.environ.get("SERVE_SCREENSHOT", tmp_path / "page.png"))
    d.execute_script("document.getElementById('slider').value = 40;"
                     "document.getElementById('slider').dispatchEvent(new Event('input'))")
    assert d.execute_script("return document.getElementById('before-clip').style.width") == "40%"
    assert d.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    d.set_window_size(390, 844)  # a phone: nothing wider than the screen
    assert d.execute_script("return document.documentElement.scrollWidth <= innerWidth + 1")
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors  # CSP violations, script errors, failed requests


def test_page_shows_a_server_error(server, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    base, _ = server
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    browser.get(base + "/")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    _wait(browser, lambda d: d.find_element(By.ID, "go").is_enabled(), 10)
    browser.find_element(By.ID, "go").click()
    _wait(browser, lambda d: d.find_element(By.ID, "error").is_displayed(), 30)
    assert "not an image" in browser.find_element(By.ID, "error").text


def test_load_on_loopback(server) -> None:
    """Real photos (BSD100's 481x321 originals, 100-400 KB PNGs) on the fast model: 16
    requests 8 at a time (the server's queue holds 8: all answered), then a burst of 24 16 at a
    time (over the queue: results and 429s); never a 5xx, memory bounded."""
    base, proc = server
    photos = image_set("BSD100") / "HR"
    steady = serve_load.load_test(base, proc.pid, serve_load.photo_uploads(photos, 16), 8, 4,
                                  model="fast")
    print(steady)
    assert steady["failures"] == [] and steady["statuses"] == {"200": 16}
    burst = serve_load.load_test(base, proc.pid, serve_load.photo_uploads(photos, 24), 16, 4,
                                 model="fast")
    print(burst)
    assert burst["failures"] == [] and set(burst["statuses"]) <= {"200", "429", "503"}
    assert burst["statuses"].get("429", 0) > 0 and burst["statuses"].get("200", 0) >= 8
    assert burst["server_peak_rss_mb_after"] < 2000


def test_page_upscales_a_real_photo_over_500_kb(server, browser) -> None:
    """Set14's barbara.png (818 KB, 720x576) through the page: the upload werkzeug's form
    limit used to refuse."""
    from selenium.webdriver.common.by import By

    base, _ = server
    src = image_set("Set14") / "HR" / "barbara.png"
    assert src.stat().st_size > 500_000
    d = browser
    d.get(base + "/")
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"), 30)
    d.find_element(By.ID, "file").send_keys(str(src))
    _wait(d, lambda d: d.find_element(By.ID, "go").is_enabled(), 10)
    d.find_element(By.ID, "go").click()
    _wait(d, lambda d: d.find_element(By.ID, "result").is_displayed()
          or d.find_element(By.ID, "error").is_displayed(), 300)
    assert not d.find_element(By.ID, "error").is_displayed(), d.find_element(By.ID, "error").text
    _wait(d, lambda d: d.execute_script(
        "const i = document.getElementById('after'); return i.complete && i.naturalWidth"), 60)
    size = d.execute_script("const i = document.getElementById('after');"
                            "return [i.naturalWidth, i.naturalHeight]")
    assert size == [4 * 720, 4 * 576]


def test_page_refuses_a_file_over_the_limit_before_uploading(server, browser,
                                                             tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    base, _ = server
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG" + b"\0" * (21 << 20))
    browser.get(base + "/")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"), 30)
    browser.find_element(By.ID, "file").send_keys(str(big))
    _wait(browser, lambda d: d.find_element(By.ID, "go").is_enabled(), 10)
    browser.find_element(By.ID, "go").click()
    _wait(browser, lambda d: d.find_element(By.ID, "error").is_displayed(), 30)
    assert "over the limit of 20,971,520 bytes" in browser.find_element(By.ID, "error").text


def test_chromium_is_the_system_one() -> None:
    if shutil.which("chromium") is None:
        pytest.skip("no chromium here")
    assert Path(CHROMIUM).resolve().exists()
