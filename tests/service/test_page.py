"""The page at / in a real headless Chromium (Debian's, driven by Playwright) against `python -m service`.

Each test saves a screenshot of what it checked under test-results/page/.
"""

from __future__ import annotations

import calendar
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.service.conftest import REPO, V1, add_training_curve, running_server
from tests.service.version_factory import Oracle, build_version, write_current

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: CI installs it; no browser is downloaded at run time
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium", allow_module_level=True)
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:
    pytest.skip("the playwright package is missing: pip install -c constraints.txt playwright", allow_module_level=True)

SHOTS = REPO / "test-results" / "page"
HOSTILE = {  # titles that run code if a page ever puts a title into innerHTML
    0: "<script>window.pwned = 1</script> (1995)",
    1: '<img src=x onerror="window.pwned = 2"> & Co (1996)',
}
TS = 885_000_000  # 1998-01-17 01:20 UTC, inside the factory's data range
WAIT_MS = 10_000


@dataclass(frozen=True)
class Site:
    base: str
    oracle: Oracle
    before_model: str  # the status line the page showed while no version existed
    after_model: str  # the same page's, without a reload, once one was loaded
    version_dir: Path
    ratings_url: str


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[Site]:
    """A real server started before any version exists, then given one whose catalogue has hostile titles.

    The page opened before the version arrived is watched here, so that every test sees the same served site.
    """
    root = tmp_path_factory.mktemp("page")
    staging, models = root / "staging", root / "models"
    models.mkdir()
    oracle = build_version(staging, V1, titles=HOSTILE, make_current=False)
    add_training_curve(staging / V1)
    ratings_url = f"sqlite:///{root}/ratings.db"
    # The fallback re-reads the store every 0.2 s: a test that stored a rating sees it counted at once.
    settings = {"poll_seconds": "0.2", "popular_refresh_seconds": "0.2", "online_refresh_seconds": "0.2"}
    with running_server(models, ratings_url, root / "server.log", ready=False, **settings) as (_, base):
        page = browser.new_page()
        page.goto(base)
        expect(page.locator("#status")).to_contain_text("No model loaded yet", timeout=WAIT_MS)
        before = page.locator("#status").inner_text()
        screenshot(page, "no-model")
        shutil.copytree(staging / V1, models / V1)
        write_current(models, V1)
        expect(page.locator("#model-facts")).to_contain_text(V1, timeout=WAIT_MS)
        after = page.locator("#status").inner_text()
        page.close()
        yield Site(base, oracle, before, after, models / V1, ratings_url)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab; the test fails on any script error or failed request the page reports."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield page
    page.close()
    assert errors == []


def screenshot(page: Page, state: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{state}.png", full_page=True)


def api(site: Site, path: str, **params: Any) -> Any:
    response = httpx.get(site.base + path, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def open_page(page: Page, site: Site, query: str = "") -> None:
    page.goto(f"{site.base}/{query}")
    expect(page.locator("#status")).to_contain_text(f"Serving version {V1}")


def rendered(page: Page) -> int:
    return int(page.locator("#recommendation-list").get_attribute("data-renders") or 0)


def wait_shown(page: Page, after: int = 0, **query: object) -> list[str]:
    """Wait until the list shows the answer to exactly `query` (rendered more than `after` times); its movie_ids."""
    query = {"explain": True, **query}  # the page always asks for the reasons
    expected = {key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in query.items()}
    page.wait_for_function(
        """([expected, after]) => {
            const list = document.getElementById("recommendation-list");
            if (list.getAttribute("aria-busy") !== "false" || Number(list.dataset.renders) <= after) return false;
            const shown = Object.fromEntries(new URLSearchParams(list.dataset.query ?? ""));
            const keys = Object.keys(expected);
            return keys.length === Object.keys(shown).length && keys.every((key) => shown[key] === expected[key]);
        }""",
        arg=[expected, after],
    )
    return ids(page, "#recommendation-list")


def ids(page: Page, selector: str) -> list[str]:
    return page.locator(f"{selector} > li").evaluate_all("items => items.map((item) => item.dataset.movieId)")


def scores(page: Page) -> dict[str, str]:
    items = page.locator("#recommendation-list > li")
    return dict(zip(ids(page, "#recommendation-list"), items.locator(".score").all_inner_texts(), strict=True))


def api_ids(body: dict[str, Any]) -> list[str]:
    return [item["movie_id"] for item in body["items"]]


# --- loading ----------------------------------------------------------------------------------------------------


def test_without_a_model_the_page_says_so_and_recovers_by_itself(site: Site) -> None:
    assert "No model loaded yet" in site.before_model and "Retrying" in site.before_model
    assert site.after_model == f"Serving version {V1}."
    assert (SHOTS / "no-model.png").stat().st_size > 0


def test_the_model_card_shows_the_served_version(site: Site, page: Page) -> None:
    open_page(page, site)
    expect(page.locator("#model-facts dt").first).to_have_text("Served version")
    expect(page.locator("#model-facts dd").first).to_have_text(V1)
    expect(page.locator("#config-table")).to_contain_text("tests/service/version_factory")
    rows = page.locator("#metrics-table tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(1).locator("th, td")).to_have_text(["B", "0.500", "0.500", "0.900", "0.900"])  # protocol B
    expect(page.locator("#curve")).to_be_visible()
    assert page.locator("#curve").evaluate("img => img.naturalWidth") == 320
    screenshot(page, "model-card")

    page.get_by_role("button", name="Random user").click()  # an id among the data's users (1..20 here)
    expect(page.locator("#user-id")).not_to_have_value("")
    user_id = page.locator("#user-id").input_value()
    assert 1 <= int(user_id) <= 20
    assert wait_shown(page, user_id=user_id, k=10, exclude_seen=True) == api_ids(
        api(site, "/recommend", user_id=user_id)
    )
    # Each recommendation says which of the user's own ratings led to it, as the API's explain=true does.
    explained = api(site, "/recommend", user_id=user_id, explain="true")
    first = next(item for item in explained["items"] if item["because"])
    shown = page.locator(f'#recommendation-list > li[data-movie-id="{first["movie_id"]}"] .because')
    expect(shown).to_have_text("because you rated " + ", ".join(f"“{m['title']}”" for m in first["because"]))


def test_the_model_card_shows_the_online_figures_of_the_answers_given(site: Site, page: Page) -> None:
    open_page(page, site)
    row = page.locator("#online-table tbody tr")
    expect(row).to_have_count(1)  # no canary: the current version alone
    expect(row.locator("th")).to_have_text(f"{V1} (current)")
    # The page's own recommendations were recorded: the card's next refresh counts them.
    expect(row.locator("td").first).not_to_have_text("0", timeout=WAIT_MS)
    expect(page.locator("#online-note")).to_contain_text("within 7 days")
    screenshot(page, "model-card-online")


# --- recommendations -----------------------------------------------------------------------------------------


def test_recommendations_from_the_form_equal_the_api(site: Site, page: Page) -> None:
    open_page(page, site)
    page.fill("#user-id", "4")
    page.uncheck("#now")
    page.fill("#date", "1998-01-20")
    page.fill("#k", "7")
    page.get_by_role("button", name="Show").click()
    moment = calendar.timegm(date(1998, 1, 20).timetuple()) + 86_399  # a picked day means its end
    shown = wait_shown(page, user_id=4, k=7, exclude_seen=True, timestamp=moment)
    body = api(site, "/recommend", user_id=4, k=7, exclude_seen="true", timestamp=moment)
    assert shown == api_ids(body) and len(shown) == 7
    first = page.locator("#recommendation-list > li").first
    expect(first.locator("button.title")).to_have_text(body["items"][0]["title"].replace(" (", " ").rstrip(")"))
    expect(first.locator(".score")).to_have_text(f"{body['items'][0]['score']:.3f}")
    assert "user_id=4" in page.url and f"timestamp={moment}" in page.url and "k=7" in page.url
    screenshot(page, "recommendations")


def test_a_link_restores_the_view(site: Site, page: Page) -> None:
    open_page(page, site, f"?user_id=5&timestamp={TS}&k=10")
    shown = wait_shown(page, user_id=5, k=10, exclude_seen=True, timestamp=TS)
    assert shown == api_ids(api(site, "/recommend", user_id=5, k=10, timestamp=TS))
    expect(page.locator("#user-id")).to_have_value("5")
    expect(page.locator("#date")).to_have_value("1998-01-17")
    expect(page.locator("#now")).not_to_be_checked()
    expect(page.locator("#moment")).to_have_text("1998-01-17 01:20 UTC")
    expect(page.locator("#history-list > li")).to_have_count(len(site.oracle.seen["5"]))
    screenshot(page, "restored-view")

    open_page(page, site, "?user_id=5&timestamp=1998-01-17T01:20:00Z&k=10")  # a hand-written link may use ISO-8601
    assert wait_shown(page, user_id=5, k=10, exclude_seen=True, timestamp=TS) == shown


def test_rating_a_movie_removes_it_and_changes_the_recommendations(site: Site, page: Page) -> None:
    open_page(page, site, f"?user_id=6&timestamp={TS}&k=10")
    before = wait_shown(page, user_id=6, k=10, exclude_seen=True, timestamp=TS)
    scores_before, renders = scores(page), rendered(page)
    rated = before[0]
    page.locator(f'#recommendation-list > li[data-movie-id="{rated}"]').get_by_role("button", name="4 stars").click()
    after = wait_shown(page, renders, user_id=6, k=10, exclude_seen=True, timestamp=TS)
    assert rated not in after
    assert after == api_ids(api(site, "/recommend", user_id=6, k=10, timestamp=TS))
    # The rating (one second before the moment) is now the user's newest history: every score moved.
    scores_after = scores(page)
    assert all(scores_after[m] != scores_before[m] for m in set(after) & set(before))
    newest = page.locator("#history-list > li").first
    expect(newest).to_have_attribute("data-movie-id", rated)
    expect(newest).to_have_attribute("data-source", "stored")
    expect(newest).to_contain_text("★★★★ 4")
    page.mouse.move(0, 0)  # no hover highlight on the stars of the movie that took the rated one's place
    title = site.oracle.movies[int(rated) - 1]["title"]
    stored = {"movie_id": rated, "title": title, "timestamp": TS - 1, "source": "stored", "rating": 4.0}
    assert api(site, "/users/6/ratings")[0] == stored
    screenshot(page, "after-rating")


def test_a_new_user_sees_the_popular_fallback_until_they_rate(site: Site, page: Page) -> None:
    open_page(page, site)
    page.get_by_role("button", name="New user").click()
    expect(page.locator("#user-id")).not_to_have_value("")
    user_id = page.locator("#user-id").input_value()
    assert int(user_id) >= 900_000_000
    shown = wait_shown(page, user_id=user_id, k=10, exclude_seen=True)
    body = api(site, "/recommend", user_id=user_id, k=10)
    assert body["personalised"] is False and shown == api_ids(body)
    assert shown == _recently_popular(site)[:10]
    expect(page.locator("#fallback")).to_be_visible()
    expect(page.locator("#fallback")).to_contain_text("this user has no ratings yet")
    expect(page.locator("#history-list")).to_have_text("No ratings yet.")
    screenshot(page, "new-user-fallback")

    renders = rendered(page)
    page.locator("#recommendation-list > li").first.get_by_role("button", name="5 stars").click()
    after = wait_shown(page, renders, user_id=user_id, k=10, exclude_seen=True)
    expect(page.locator("#fallback")).to_be_hidden()
    body = api(site, "/recommend", user_id=user_id, k=10)
    assert body["personalised"] is True and body["history_used"] == 1 and after == api_ids(body)
    screenshot(page, "new-user-after-rating")


def _recently_popular(site: Site) -> list[str]:
    """What a user with no ratings gets at now: the version's ratings and every stored one, 14-day half-life."""
    from contract.contents import read_movies, read_seen
    from contract.popularity import DAY_SECONDS, DecayedPopularity
    from contract.ratings import RatingsStore

    movies = read_movies(site.version_dir)
    counts = DecayedPopularity.from_user_ratings(
        read_seen(site.version_dir, len(movies)), len(movies), 14 * DAY_SECONDS
    )
    row_of = {m["movie_id"]: row for row, m in enumerate(movies)}
    with RatingsStore(site.ratings_url) as store:
        stored = store.ratings_up_to(store.last_id())
    counts.add(np.array([row_of[m] for m in stored.movie_id.tolist()], dtype=np.int64), stored.timestamp)
    return [movies[row]["movie_id"] for row in counts.ranking().tolist()]


# --- search and similar movies -----------------------------------------------------------------------------------


def test_clicking_a_found_movie_shows_its_similar_movies(site: Site, page: Page) -> None:
    open_page(page, site, "?user_id=5")
    page.fill("#q", "movie 3")
    page.press("#q", "Enter")
    expect(page.locator("#search-list > li")).not_to_have_count(0)
    assert ids(page, "#search-list") == [m["movie_id"] for m in api(site, "/movies", q="movie 3")]
    chosen = ids(page, "#search-list")[0]
    page.locator("#search-list > li").first.locator("button.title").click()
    expect(page.locator("#similar-list")).to_have_attribute("data-movie-id", chosen)
    similar = api(site, f"/movies/{chosen}/similar", k=10)
    assert ids(page, "#similar-list") == api_ids(similar)
    expect(page.locator("#similar-to")).to_contain_text(similar["title"].split(" (")[0])
    assert f"movie={chosen}" in page.url
    screenshot(page, "similar")

    page.reload()  # the selected movie is part of the link
    expect(page.locator("#similar-list")).to_have_attribute("data-movie-id", chosen)
    assert ids(page, "#similar-list") == api_ids(similar)


def test_every_title_is_shown_as_text(site: Site, page: Page) -> None:
    open_page(page, site)
    page.fill("#q", "<")
    page.press("#q", "Enter")
    titles = page.locator("#search-list button.title")
    expect(titles).to_have_text(
        ["<script>window.pwned = 1</script> 1995", '<img src=x onerror="window.pwned = 2"> & Co 1996']
    )
    titles.nth(1).click()
    expect(page.locator("#similar-to")).to_have_text('Closest to <img src=x onerror="window.pwned = 2"> & Co (1996):')
    assert page.evaluate("window.pwned") is None
    assert page.evaluate("document.scripts.length") == 1  # app.js only
    assert page.locator("main img").count() == 1  # the training curve only
    screenshot(page, "escaped-titles")


# --- narrow screens and the keyboard ----------------------------------------------------------------------------


def test_a_narrow_screen_shows_one_column_with_the_list(site: Site, page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    open_page(page, site, f"?user_id=5&timestamp={TS}&k=10")
    shown = wait_shown(page, user_id=5, k=10, exclude_seen=True, timestamp=TS)
    assert len(shown) == 10
    expect(page.locator("#recommendation-list > li").first).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing scrolls sideways
    boxes = [page.locator(selector).bounding_box() for selector in ("#recommendations", "#history", "#model-card")]
    assert all(box is not None for box in boxes)
    assert len({round(box["x"]) for box in boxes if box}) == 1  # stacked: one column
    assert all(box["x"] + box["width"] <= 390 for box in boxes if box)
    screenshot(page, "narrow")


def test_the_keyboard_alone_can_ask_for_a_user_and_open_a_movie(site: Site, page: Page) -> None:
    open_page(page, site)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "user-id"
    page.keyboard.type("7")
    page.keyboard.press("Enter")
    shown = wait_shown(page, user_id=7, k=10, exclude_seen=True)
    assert shown == api_ids(api(site, "/recommend", user_id=7, k=10))
    for _ in range(30):  # on through the form's controls to the first title in the list
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('#recommendation-list button.title')"):
            break
    focused = page.evaluate("document.activeElement.closest('li').dataset.movieId")
    assert focused == shown[0]
    page.keyboard.press("Enter")
    expect(page.locator("#similar-list")).to_have_attribute("data-movie-id", focused)
    screenshot(page, "keyboard")
