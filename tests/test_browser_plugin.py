"""The plugin's page in headless Chromium: a labelled heatmap is really drawn.

Needs Chromium and chromedriver (Debian ``chromium`` and ``chromium-driver``; .ci/run
installs them). Outside CI the test is skipped when they are missing; in CI it fails.
The screenshot is kept in ``artifacts/`` (or ``$FESEQ_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator

import numpy as np
import pytest

from tests.tb_fixtures import ARTIFACTS_DIR, TensorBoardServer, browser_paths, wait_for

pytest_plugins = ("tests.tb_fixtures",)  # fixtures: tiny_run, tensorboard_server

SCREENSHOT = "tensorboard_attention_plugin.png"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", "--disable-dev-shm-usage", "--window-size=1400,1000",
)
DONE = ("drawn", "blank", "empty", "error")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium, driver_path = browser_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("selenium is not installed (requirements-dev.txt).")
        pytest.skip("selenium is not installed (pip install -r requirements-dev.txt)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    with tempfile.TemporaryDirectory(prefix="feseq-chromium-") as profile:
        for flag in CHROMIUM_FLAGS + (f"--user-data-dir={profile}",):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        driver.set_page_load_timeout(60)
        try:
            yield driver
        finally:
            driver.quit()


def _status(driver) -> str | None:
    return driver.execute_script("return document.body && document.body.dataset.status")


def _open_plugin_tab(driver, url: str) -> None:
    """Loads TensorBoard on the plugin's tab and enters the plugin's iframe."""
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/#feseq_attention")
    frames = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "iframe"), timeout=60, interval=0.5)
    assert frames, "TensorBoard did not open the plugin's iframe"
    driver.switch_to.frame(frames[0])
    assert wait_for(lambda: _status(driver) in DONE, timeout=60, interval=0.5), _status(driver)


def _cell_point(canvas, rows: int, cols: int, i: int, j: int) -> tuple[int, int]:
    """Offset of cell (i, j)'s centre from the canvas centre (selenium's origin)."""
    width, height = canvas.size["width"], canvas.size["height"]
    return int((j + 0.5) * width / cols - width / 2), int((i + 0.5) * height / rows - height / 2)


@pytest.mark.slow
def test_plugin_tab_draws_a_labelled_heatmap(browser, tensorboard_server, tiny_run):
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    _open_plugin_tab(driver, tensorboard_server.url)
    assert _status(driver) == "drawn"

    # The default view: the last step of the input field x field attention, 23 x 23.
    names = tiny_run.field_names
    canvas = driver.find_element(By.CSS_SELECTOR, "canvas.fa-cells")
    figure = driver.find_element(By.CSS_SELECTOR, ".fa-figure")
    last = max(tiny_run.written)
    assert figure.get_attribute("data-tag") == "attention/input_fields"
    assert figure.get_attribute("data-step") == str(last)
    assert canvas.get_attribute("data-rows") == canvas.get_attribute("data-cols") == str(len(names))
    # Every cell's centre pixel was painted (read back from the canvas by the page).
    assert int(canvas.get_attribute("data-drawn-cells")) == len(names) ** 2
    rows = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".fa-row-label")]
    cols = [e.get_attribute("textContent") for e in driver.find_elements(By.CSS_SELECTOR, ".fa-col-label")]
    assert rows == names and cols == names
    assert Select(driver.find_element(By.CSS_SELECTOR, "select.fa-run")).first_selected_option.text == "attention"

    # The pixels of the drawn cells: not blank, many colours.
    cells = Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB")
    pixels = np.asarray(cells).reshape(-1, 3)
    assert (pixels.min(axis=1) < 245).mean() > 0.95, "the heatmap area is mostly blank"
    assert len(np.unique(pixels, axis=0)) > 20

    # The value under the pointer: gender (row) -> category_1_id (column).
    i, j = names.index("gender"), names.index("category_1_id")
    dx, dy = _cell_point(canvas, len(names), len(names), i, j)
    ActionChains(driver).move_to_element_with_offset(canvas, dx, dy).perform()
    readout = driver.find_element(By.CSS_SELECTOR, ".fa-readout")
    assert wait_for(lambda: readout.text, timeout=10, interval=0.2)
    label, value = readout.text.rsplit(": ", 1)
    assert label == "gender \u2192 category_1_id"
    expected = tiny_run.written[last]["attention/input_fields"].values[i, j]
    assert float(value) == pytest.approx(expected, rel=1e-3)
    assert driver.find_element(By.CSS_SELECTOR, ".fa-tooltip").is_displayed()

    # The step slider: back to step 0 (the untrained model).
    driver.execute_script(
        "const s = document.querySelector('.fa-slider'); s.value = '0';"
        "s.dispatchEvent(new Event('input'));"
    )
    assert wait_for(lambda: figure.get_attribute("data-step") == "0", timeout=20, interval=0.2)
    assert driver.find_element(By.CSS_SELECTOR, ".fa-step").text.startswith("0 (1 of ")

    # The tag selector: pooling attention, probe samples x positions.
    Select(driver.find_element(By.CSS_SELECTOR, "select.fa-tag")).select_by_value(
        "attention/pooling_samples"
    )
    assert wait_for(
        lambda: figure.get_attribute("data-tag") == "attention/pooling_samples", timeout=20, interval=0.2
    )
    canvas = driver.find_element(By.CSS_SELECTOR, "canvas.fa-cells")
    positions = [e.get_attribute("textContent") for e in driver.find_elements(By.CSS_SELECTOR, ".fa-col-label")]
    assert positions[-1] == "target" and len(positions) == tiny_run.spec.max_len + 1
    assert int(canvas.get_attribute("data-drawn-cells")) == int(canvas.get_attribute("data-rows")) * len(positions)

    # Back to the field attention for the kept screenshot of the whole TensorBoard page.
    Select(driver.find_element(By.CSS_SELECTOR, "select.fa-tag")).select_by_value("attention/input_fields")
    assert wait_for(lambda: figure.get_attribute("data-tag") == "attention/input_fields", timeout=20, interval=0.2)
    driver.switch_to.default_content()
    os.makedirs(ARTIFACTS_DIR, exist_ok=True)
    path = os.path.join(ARTIFACTS_DIR, SCREENSHOT)
    assert driver.save_screenshot(path)
    shot = np.asarray(Image.open(path).convert("RGB"))
    assert shot.shape[0] > 500 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 50


@pytest.mark.slow
def test_plugin_page_without_summaries_says_how_to_get_them(browser, tiny_run):
    from selenium.webdriver.common.by import By

    with TensorBoardServer(os.path.join(tiny_run.logdir, "train")) as tb:
        browser.get(f"{tb.url}/data/plugin_entry.html?name=feseq_attention")
        assert wait_for(lambda: _status(browser) in DONE, timeout=30, interval=0.5)
        assert _status(browser) == "empty"
        assert "AttentionSummaries" in browser.find_element(By.CSS_SELECTOR, ".fa-message").text
