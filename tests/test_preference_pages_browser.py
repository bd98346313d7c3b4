"""The preference pages in a real browser: Debian's Chromium, headless, driven
by Playwright, against the real webhook server (uvicorn on loopback), from
the links of a really delivered email. Screenshots are decoded and checked
(the size asked for, drawn text and controls, the page's own colours), and
the page is read the way assistive technology reads it (roles and names).

Playwright's own browser download is never used: ``make install-test``
installs Debian's ``chromium`` when it can. Without it these tests skip —
and fail when ``CI=true``."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from chromium import headless_chromium
from factories import NOW
from outreach.config import Settings
from outreach.store.models import MarketingPause, TopicOptOut
from preference_helpers import Clock, deliver, lapsed_customer, plan, rule, settings_for, webhooks

DESKTOP, PHONE = (1024, 900), (390, 844)
#: The pages' green (buttons, ticked boxes) and white background.
GREEN, WHITE = (47, 125, 79), (255, 255, 255)
#: WCAG's minimum touch target is 44 px; the pages aim at 48.
MIN_TARGET_PX = 44


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as launched:
        yield launched


def delivered_email(engine: Engine, settings: Settings, tmp_path: Path, ext: str, **customer: Any) -> str:
    """The HTML of the offer really delivered (file outbox) to a lapsed customer."""
    lapsed_customer(engine, ext, **customer)
    queued = plan(engine, rule("winback-a", topic="offers", channels="[email]"), NOW)
    deliver(settings, engine, queued, NOW)
    mail = email.message_from_bytes((tmp_path / "outbox" / "email" / f"{queued[0]}.eml").read_bytes(),
                                    policy=email.policy.default)
    return str(mail.get_body(("html",)).get_content())  # type: ignore[union-attr]


def link(html: str, settings: Settings, kind: str) -> str:
    found = re.search(rf'href="({re.escape(settings.public_url)}/{kind}/[^"]+)"', html)
    assert found, f"no /{kind}/ link in the email"
    return found.group(1)


def check_screenshot(path: Path, size: tuple[int, int]) -> None:
    """Not blank, the size asked for, the page's own colours drawn."""
    from PIL import Image

    with Image.open(path) as shot:
        assert shot.format == "PNG" and shot.size == size
        colours = shot.convert("RGB").getcolors(maxcolors=size[0] * size[1])
    assert colours is not None
    total = size[0] * size[1]

    def share(near: tuple[int, int, int], within: int) -> float:
        return sum(n for n, rgb in colours if max(abs(a - b) for a, b in zip(rgb, near, strict=True)) <= within) / total

    assert share(WHITE, 8) > 0.5, "the background is not the page's white"
    assert 1 - share(WHITE, 40) > 0.03, "almost nothing is drawn: the page looks blank"
    assert share(GREEN, 12) > 0.002, "no button or ticked box in the page's green"
    assert len(colours) > 50, "no text (anti-aliased glyphs give many shades)"


def check_page(page: Any) -> None:
    """Every choice a target large enough to touch; nothing wider than the window."""
    for box in (page.locator("label.option, button").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect()).map(r => [r.width, r.height])")):
        assert box[1] >= MIN_TARGET_PX, f"a control {box[1]} px high"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_from_the_unsubscribe_page_to_a_topic_turned_off(
        browser: Any, engine: Engine, db_url: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, db_url)
    # Given Ada's delivered offer
    html = delivered_email(engine, settings, tmp_path, "ada")
    with webhooks(engine, settings, Clock()) as http:
        context = browser.new_context(viewport={"width": DESKTOP[0], "height": DESKTOP[1]})
        page = context.new_page()
        fetched: list[str] = []
        page.on("request", lambda request: fetched.append(request.url))
        # When she opens its unsubscribe link and follows the page's link to her preferences
        page.goto(link(html, settings, "u"))
        assert page.get_by_role("heading", name="Unsubscribe").is_visible()
        page.get_by_role("link", name="Your preferences").click()
        page.wait_for_load_state()
        # Then her preferences show, every choice labelled and grouped
        assert page.get_by_role("heading", name="Your preferences").is_visible()
        topics = page.get_by_role("group", name="What you would like to hear about")
        offers = topics.get_by_role("checkbox", name="Offers and recommendations")
        assert offers.is_checked() and topics.get_by_role("checkbox").count() == 4
        channels = page.get_by_role("group", name="How we may contact you")
        assert channels.get_by_role("checkbox", name="Email").is_checked()
        assert page.get_by_role("group", name="Take a break").get_by_role("radio").count() == 4
        check_page(page)
        page.screenshot(path=tmp_path / "preferences.png")
        check_screenshot(tmp_path / "preferences.png", DESKTOP)
        # When she turns offers off (by its label, as a finger would) and saves
        page.get_by_text("Offers and recommendations", exact=True).click()
        assert not offers.is_checked()
        page.get_by_role("button", name="Save my preferences").click()
        page.wait_for_load_state()
        # Then the page confirms it and shows the choice kept
        assert page.get_by_role("status").inner_text() == "Your preferences are saved."
        assert not page.get_by_role("checkbox", name="Offers and recommendations").is_checked()
        assert page.get_by_role("checkbox", name="Care messages").is_checked()
        page.screenshot(path=tmp_path / "saved.png")
        check_screenshot(tmp_path / "saved.png", DESKTOP)
        context.close()
        assert http.get("/healthz").status_code == 200
    with Session(engine) as s:
        assert s.scalars(select(TopicOptOut.topic)).all() == ["offers"]
    # And nothing was fetched from anywhere but the server itself (no CDN, no web font)
    assert fetched and all(url.startswith(settings.public_url) for url in fetched), fetched


def test_the_chinese_page_on_a_phone(browser: Any, engine: Engine, db_url: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, db_url)
    html = delivered_email(engine, settings, tmp_path, "wang", locale="zh_CN", name="王小明")
    with webhooks(engine, settings, Clock()):
        context = browser.new_context(viewport={"width": PHONE[0], "height": PHONE[1]}, is_mobile=True,
                                      has_touch=True, locale="zh-CN")
        page = context.new_page()
        # When Wang opens the preference link of his (Chinese) email on his phone
        page.goto(link(html, settings, "p"))
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        assert page.get_by_role("heading", name="订阅偏好设置").is_visible()
        topics = page.get_by_role("group", name="您希望收到的内容")
        assert topics.get_by_role("checkbox", name="优惠与推荐").is_checked()
        check_page(page)
        page.screenshot(path=tmp_path / "zh_CN.png")
        check_screenshot(tmp_path / "zh_CN.png", PHONE)
        # And takes a 30-day break (tapping its label)
        page.get_by_role("radio", name=re.compile("暂停所有营销消息 30 天")).tap()
        page.get_by_role("button", name="保存我的设置").tap()
        page.wait_for_load_state()
        assert page.get_by_role("status").inner_text() == "您的设置已保存。"
        assert page.get_by_role("radio", name=re.compile("保持暂停至")).is_checked()
        page.screenshot(path=tmp_path / "zh_CN_saved.png", full_page=True)
        context.close()
    with Session(engine) as s:
        assert s.scalars(select(MarketingPause)).one() is not None
