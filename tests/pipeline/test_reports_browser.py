"""Each report opened in headless Chromium (Debian's package, installed by
scripts/install-chromium.sh): screenshot, key elements present, no external request.
The rating control's export is imported back with `trialprep qc import`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.xdist_group("pipeline")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        yield b
        b.close()


def open_report(browser, path, shot):
    page = browser.new_page(accept_downloads=True)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(shot), full_page=True)
    external = [u for u in requests if u != path.as_uri() and not u.startswith(("data:",
                                                                               "blob:"))]
    assert not external, f"{path.name} loads external resources: {external[:5]}"
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    return page


def reports(small_study):
    r = small_study["out"] / "reports"
    session = sorted((r / "sessions").glob("*.html"))[0]
    return {
        "dashboard": (r / "index.html", ["#completeness-matrix", "#deviation-list",
                                         "#pass-rates", "#excluded"]),
        "site": (r / "sites" / "osaka.html", ["#gate", "#epochs", "#deviations",
                                              "#iqm-comparison svg", "#images", "#ratings"]),
        "session": (session, ["#verdict", "#reportlets svg", "#iqms", "#export-ratings"]),
        "harmonization": (r / "harmonization.html", ["#auc", "#distributions svg",
                                                     "#covariate-effects"]),
    }


@pytest.mark.parametrize("kind", ["dashboard", "site", "session", "harmonization"])
def test_report_renders_offline_with_its_key_elements(browser, small_study, tmp_path, kind):
    path, selectors = reports(small_study)[kind]
    page = open_report(browser, path, tmp_path / f"{kind}.png")
    for sel in selectors:
        assert page.locator(sel).count() >= 1, f"{kind}: {sel} missing"
        assert page.locator(sel).first.is_visible(), f"{kind}: {sel} not visible"
    assert page.locator("#provenance").inner_text().startswith("Provenance")
    page.close()


def test_ratings_exported_from_a_report_are_imported_into_the_audit(browser, small_study,
                                                                     tmp_path):
    path, _ = reports(small_study)["site"]
    page = open_report(browser, path, tmp_path / "rate.png")
    page.fill("#rater", "Q. C. Staff")
    row = page.locator("tr.rating-row").first
    image = row.get_attribute("data-image")
    row.locator("input[value=fail]").check()
    row.locator("input.reason").fill("ringing artefact")
    with page.expect_download() as dl:
        page.click("#export-ratings")
    ratings = tmp_path / "ratings.json"
    dl.value.save_as(ratings)
    page.close()
    data = json.loads(ratings.read_text())
    assert data["rater"] == "Q. C. Staff" and data["ratings"] == [
        {"image": image, "verdict": "fail", "reason": "ringing artefact"}]
    bids = small_study["bids"]
    proc = subprocess.run([sys.executable, "-m", "trialprep.cli", "qc", "import", str(ratings),
                           "--bids", str(bids)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    from trialprep.audit import study_audit

    last = study_audit(bids).latest("rating")[-1]
    assert last["actor"] == "Q. C. Staff" and last["data"]["image"] == image
    assert last["data"]["verdict"] == "fail"
