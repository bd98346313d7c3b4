"""``outreach report --html``: the report's document as one self-contained page.

The page is read back the way a browser builds it (html.parser into a tree):
every rule is there with its figures as people read them, each chart draws one
mark per figure, the SIMULATED banner shows exactly when simulated rows were
counted, nothing is fetched from anywhere, and names from user data stay text.
Then Debian's Chromium opens it with the network cut off, on a desktop, a phone
and paper (tests at the end)."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from chromium import headless_chromium
from outreach.reporting.html import render_html
from report_documents import empty_document, report_document, rule_entry

VOID = {"meta", "br", "img", "input", "link", "hr", "source", "wbr", "area", "base", "col", "embed", "track"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def all(self, tag: str | None = None, cls: str | None = None) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                if (tag is None or child.tag == tag) and (cls is None or cls in child.classes()):
                    yield child
                yield from child.all(tag, cls)

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = [n for n in self.all(tag, cls) if all(n.attrs.get(k) == v for k, v in attrs.items())]
        assert len(found) == 1, f"{len(found)} <{tag} class={cls} {attrs}>"
        return found[0]

    def child(self, tag: str) -> Node:
        return next(c for c in self.children if isinstance(c, Node) and c.tag == tag)

    def text(self) -> str:
        return " ".join(" ".join(c.split()) if isinstance(c, str) else c.text() for c in self.children).strip()


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>: the page is malformed"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    assert builder.stack == [builder.root], "an element is never closed"
    return builder.root


def thousands(amount: str) -> str:
    """What an amount of the document should read as, written here independently of the page's code."""
    whole, _, cents = amount.partition(".")
    sign = "-" if whole.startswith("-") else ""
    digits = whole.lstrip("-")
    groups = [digits[max(i - 3, 0):i] for i in range(len(digits), 0, -3)][::-1]
    return f"{sign}{','.join(groups)}.{(cents + '00')[:2]}"


# --- What the page says -----------------------------------------------------------------------------------

def test_every_rule_is_on_the_page_with_its_figures_as_people_read_them() -> None:
    document = report_document()
    page = parse(render_html(document))
    rows = {row.find("td", "name").find("a").text(): row for row in page.find("table", "summary").all("tr")
            if row.attrs.get("id", "").startswith("summary-")}
    assert list(rows) == ["winback", "birthday", "upsell-premium", "welcome"]
    winback = rows["winback"].text()
    rule = document["rules"][0]
    # Rates as percentages, the lift in signed points with its interval, amounts with separators
    treated, control = rule["treated"]["conversion_rate"], rule["control"]["conversion_rate"]
    assert f"{treated * 100:.1f}% · {control * 100:.1f}%" == "10.8% · 5.0%"
    assert "10.8% · 5.0%" in winback and "+5.8 pp" in winback and "4.4 to 7.2" in winback
    assert thousands(rule["cost"]["total"]) == "4,691.30" and "4,691.30" in winback
    assert f"{rule['lift']['incremental_revenue']['estimate']:,.2f}" in winback
    assert "significant gain" in winback and "simulated" in winback
    assert thousands(rule["last_touch"]["revenue"]) in winback
    assert "significant loss" in rows["upsell-premium"].text() and "-2.1 pp" in rows["upsell-premium"].text()
    assert "not significant" in rows["birthday"].text()
    assert "no control group" in rows["welcome"].text() and "not measured" in rows["welcome"].text()
    # And each rule has its own section with its verdict in words, its cost and its variants
    for i, rule in enumerate(document["rules"], start=1):
        section = page.find("section", id=f"rule-{i}")
        assert section.find("h3").text() == rule["rule"]
        text = section.text()
        for part in ("messages", "fixed", "discounts", "total"):
            assert thousands(rule["cost"][part]) in text
        if rule["lift"]:
            assert rule["lift"]["verdict"] in text
        else:
            assert "Not measured: no control group" in text
    variants = page.find("section", id="rule-1").find("table", "variants")
    assert [row.find("td", "name").text() for row in variants.find("tbody").all("tr")] == ["A", "B ★ winner"]


def test_each_chart_draws_one_mark_per_figure_with_a_name_for_screen_readers() -> None:
    document = report_document()
    page = parse(render_html(document))
    charts = list(page.all("svg", "chart"))
    assert charts and all(c.attrs.get("role") == "img" and c.attrs.get("aria-label") and c.child("title").text()
                          for c in charts)
    # A funnel per rule: planned, sent, opened, clicked, converted and held out, each bar with its count beside
    funnels = list(page.all("svg", "funnel"))
    assert len(funnels) == len(document["rules"])
    for funnel, rule in zip(funnels, document["rules"], strict=True):
        assert len(list(funnel.all("rect", "bar"))) == 6
        labels = [t.text() for t in funnel.all("text", "value")]
        assert labels[0] == f"{rule['funnel']['planned']:,}"
        assert labels[-1].startswith(f"{rule['funnel']['held_out']:,} ")
    # The timeline: a bar per day, rule and group
    timeline = page.find("svg", "timeline")
    cells = {(e["date"], e["rule"], e["group"]) for e in document["timeline"]}
    assert len(list(timeline.all("rect", "bar"))) == len(cells) == 14 * 7
    assert len(list(timeline.all("rect", "timeline-control"))) == 14 * 3
    # The forest plot: a point and a whisker per rule and variant that has a lift; the zero line
    forest = page.find("svg", "forest")
    measured = [r for r in document["rules"] if r["lift"]] + [v for r in document["rules"] for v in r["variants"]]
    assert len(list(forest.all("circle", "estimate"))) == len(measured) == 5
    assert len(list(forest.all("line", "zero"))) == 1
    assert "not measured: no control group" in forest.text()
    # The splits: one interval per value, a table per dimension that has rows
    splits = page.find("section", None, **{"aria-labelledby": "splits-title"})
    assert [h.text() for h in splits.all("h4")] == ["Channel", "Customer type", "Locale"]
    rows = [row for rows in document["splits"].values() for row in rows]
    assert len(list(splits.all("circle", "estimate"))) == len(rows) == 8


def test_the_lifts_are_coloured_by_verdict() -> None:
    page = parse(render_html(report_document()))
    forest = page.find("svg", "forest")
    verdicts = {g.find("title").text().split(":")[0]: (g.classes() - {"lift"}).pop() for g in forest.all("g", "lift")}
    assert verdicts == {"winback (simulated)": "lift-up", "variant A": "lift-up", "variant B ★ winner": "lift-up",
                        "birthday": "lift-flat", "upsell-premium": "lift-down"}


@pytest.mark.parametrize("simulated", [True, False])
def test_the_simulated_banner_shows_exactly_when_simulated_rows_were_counted(simulated: bool) -> None:
    page = parse(render_html(report_document(simulated=simulated)))
    banners = [n for n in page.all(None, "banner")]
    badges = [n.text() for n in page.all("span", "sim")]
    if simulated:
        [banner] = banners
        assert "SIMULATED" in banner.text() and "95 simulated orders" in banner.text()
        assert "900 simulated events" in banner.text()
        assert "(SIMULATED)" in page.find("head").find("title").text()
        # Beside each rule that counted simulated orders, wherever it is counted
        assert badges.count("simulated") >= 1 + 2 + 2  # the summary and the splits' winback rows
        assert "simulated: 95 orders" in badges and "includes simulated orders" in badges
        assert not list(page.find("section", id="rule-2").all("span", "sim"))
    else:
        assert banners == [] and badges == []
        assert "simulated" not in page.find("main").text().lower()


def test_warnings_currency_rates_and_unconverted_money_are_shown_at_the_top() -> None:
    document = report_document()
    page = parse(render_html(document))
    warnings = page.find("section", "warnings")
    assert [li.text() for li in warnings.all("li")] == document["warnings"]
    currency = page.find("section", None, **{"aria-labelledby": "currency-title"}).text()
    assert "CNY" in currency and "1 USD = 7.10 CNY" in currency and "1 EUR = 7.72 CNY" in currency
    assert "JPY 4,500.00 in 3 orders" in currency
    # The warnings come before any figure
    order = [n.attrs.get("id") or next(iter(n.classes()), "") for n in page.find("main").children
             if isinstance(n, Node)]
    assert order.index("warnings") < order.index("kpis") < order.index("card")


def test_nothing_on_the_page_is_fetched_from_anywhere() -> None:
    page_html = render_html(report_document())
    page = parse(page_html)
    assert not list(page.all("script")) and not list(page.all("link")) and not list(page.all("img"))
    for node in page.all():
        for name in ("src", "href", "srcset", "poster", "data", "action", "xlink:href"):
            value = node.attrs.get(name)
            assert value is None or value.startswith("#"), f"<{node.tag} {name}={value!r}>"
    style = page.find("style").text()
    assert "url(" not in style and "@import" not in style and "@font-face" not in style
    # The one http URL is SVG's namespace, a name that nothing fetches
    assert set(re.findall(r"https?://[^\s\"'<>)]+", page_html)) == {"http://www.w3.org/2000/svg"}


def test_names_from_user_data_stay_text() -> None:
    # Given a rule, a split value, a channel and a warning written to break out of the page
    hostile = '<script>alert("rule")</script>'
    document = report_document()
    document["rules"][0]["rule"] = hostile
    document["rules"][0]["channels"] = ['"><img src=x onerror=alert(1)>']
    for entry in document["timeline"]:
        if entry["rule"] == "winback":
            entry["rule"] = hostile
    document["splits"]["channel"][0]["value"] = "</title></svg><script>alert('split')</script>"
    document["splits"]["channel"][0]["rule"] = hostile
    document["warnings"].append("<b onmouseover=alert(1)>bold</b>")
    document["rates"]["<i>X</i>"] = "1"
    # When the page is rendered
    page_html = render_html(document)
    page = parse(page_html)
    # Then no element came from the data, and the names read as they were written
    assert not list(page.all("script")) and not list(page.all("img")) and not list(page.all("b"))
    assert not list(page.all("i"))
    assert "<script>" not in page_html and "onerror=alert" not in page_html.replace("onerror=alert(1)&gt;", "")
    assert page.find("section", id="rule-1").find("h3").text() == hostile
    assert any(t.text().startswith(hostile) for t in page.find("svg", "forest").all("text"))
    assert any(hostile in t.text() for t in page.find("svg", "timeline").all("title"))
    assert "</title></svg><script>alert('split')</script>" in next(page.all("table", "split")).text()
    assert "<b onmouseover=alert(1)>bold</b>" in page.find("section", "warnings").text()


# --- Edge cases: the page is still made, and says what is missing -------------------------------------------

def with_rules(*rules: dict[str, Any], days: int = 3) -> dict[str, Any]:
    from report_documents import timeline

    document = empty_document()
    document["rules"] = list(rules)
    document["timeline"] = timeline(list(rules), days)
    return document


def test_a_report_without_rules_says_so() -> None:
    page = parse(render_html(empty_document()))
    assert "No rules yet" in page.text()
    assert not list(page.all("svg")) and not list(page.all(None, "banner")) and not list(page.all(None, "warnings"))
    assert "No attributed orders yet." in page.text() and "No splits in this report." in page.text()


def test_a_rule_without_a_control_group_has_no_lift_and_says_why() -> None:
    rule = rule_entry("welcome", planned=500, holdout=0, treated_rate=0.1, control_rate=0, order_value=50)
    page = parse(render_html(with_rules(rule)))
    assert rule["lift"] is None and rule["control"] is None
    assert not list(page.find("svg", "forest").all("circle"))
    assert "not measured: no control group" in page.find("svg", "forest").text()
    assert len(list(page.find("svg", "timeline").all("rect", "bar"))) == 3  # treated only


def test_an_all_zero_funnel_draws_empty_bars() -> None:
    rule = rule_entry("quiet", planned=0, holdout=10, treated_rate=0, control_rate=0, order_value=10)
    page = parse(render_html(with_rules(rule)))
    bars = list(page.find("svg", "funnel").all("rect", "bar"))
    assert len(bars) == 6 and {b.attrs["width"] for b in bars} == {"0.0"}
    assert [t.text() for t in page.find("svg", "funnel").all("text", "value")][:2] == ["0", "0 · — of planned"]


def test_a_negative_lift_is_a_loss_left_of_zero() -> None:
    rule = rule_entry("pushy", planned=20000, holdout=20, treated_rate=0.02, control_rate=0.05, order_value=100)
    page = parse(render_html(with_rules(rule)))
    [mark] = page.find("svg", "forest").all("g", "lift")
    zero = page.find("svg", "forest").find("line", "zero")
    assert "lift-down" in mark.classes()
    assert float(mark.find("circle").attrs["cx"]) < float(zero.attrs["x1"])
    assert "-3.0 pp" in page.find("table", "summary").text()


def test_huge_numbers_are_written_in_full_and_axes_stay_short() -> None:
    rule = rule_entry("whale", planned=10**9, holdout=10, treated_rate=0.5, control_rate=0.4, order_value=10**6)
    rule["cost"]["total"] = "123456789012345.67"
    page = parse(render_html(with_rules(rule, days=1)))
    assert "123,456,789,012,345.67" in page.find("section", id="rule-1").text()
    assert "1,000,000,000" in page.find("svg", "funnel").text()
    ticks = [t.text() for t in page.find("svg", "timeline").all("text", "axis-label")]
    assert all(len(t) <= 6 for t in ticks), ticks


def test_one_day_of_timeline_and_no_splits() -> None:
    document = with_rules(rule_entry("a", planned=1000, holdout=10, treated_rate=0.1, control_rate=0.05,
                                     order_value=80), days=1)
    document.pop("splits", None)
    page = parse(render_html(document))
    timeline = page.find("svg", "timeline")
    assert len(list(timeline.all("rect", "bar"))) == 2
    assert all(float(b.attrs["width"]) <= 26 for b in timeline.all("rect", "bar"))
    assert "No splits in this report." in page.text()


def test_missing_parts_of_a_rule_read_as_missing() -> None:
    document = report_document()
    rule = copy.deepcopy(document["rules"][1])
    for key in ("funnel", "cost", "last_touch", "variants", "offers", "treated", "control"):
        rule.pop(key)
    rule["lift"]["conversion_pp"] = None
    rule["lift"]["incremental_roi"] = None
    document["rules"] = [rule]
    page = parse(render_html(document))
    assert "—" in page.find("table", "summary").text()
    assert not list(page.find("svg", "forest").all("circle"))


# --- In a browser -------------------------------------------------------------------------------------------

DESKTOP, PHONE = (1200, 900), (390, 844)
#: Colours the page must draw: the verdicts' green and red, the SIMULATED banner's amber.
GAIN, LOSS, SIMULATED = (27, 127, 75), (180, 35, 24), (217, 119, 6)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as launched:
        yield launched


def open_offline(browser: Any, path: Path, **context: Any) -> tuple[Any, Any, list[str], list[str]]:
    """The page opened from its file with every other request aborted (and recorded), console errors kept."""
    ctx = browser.new_context(**context)
    attempted: list[str] = []
    errors: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url == path.as_uri():
            request_route.continue_()
        else:
            attempted.append(url)
            request_route.abort()

    ctx.route("**/*", route)
    page = ctx.new_page()
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return ctx, page, attempted, errors


def colour_share(colours: list[tuple[int, tuple[int, int, int]]], near: tuple[int, int, int]) -> int:
    return sum(n for n, rgb in colours if max(abs(a - b) for a, b in zip(rgb, near, strict=True)) <= 10)


def test_the_page_in_chromium_offline_on_a_desktop(browser: Any, tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "report.html"
    path.write_text(render_html(report_document()), encoding="utf-8")
    ctx, page, attempted, errors = open_offline(browser, path,
                                                viewport={"width": DESKTOP[0], "height": DESKTOP[1]})
    # Nothing was asked of the network, nothing went wrong
    assert attempted == [] and errors == []
    # Every chart is drawn with a size
    sizes = page.locator("svg.chart").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [e.classList[1], r.width, r.height]; })")
    assert len(sizes) == 4 + 1 + 1 + 8  # funnels, forest, timeline, split intervals
    assert all(w > 50 and h > 10 for _, w, h in sizes), sizes
    assert page.get_by_role("img", name=re.compile("^Lift in conversion with its 95% interval")).is_visible()
    assert page.get_by_role("alert").inner_text().startswith("SIMULATED")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # The full page as an image: the width asked for, long, drawn in the page's colours
    page.screenshot(path=tmp_path / "report.png", full_page=True)
    ctx.close()
    with Image.open(tmp_path / "report.png") as shot:
        assert shot.format == "PNG" and shot.size[0] == DESKTOP[0] and shot.size[1] > 3 * DESKTOP[1]
        colours = shot.convert("RGB").getcolors(maxcolors=shot.size[0] * shot.size[1])
    assert colours is not None and len(colours) > 200, "a blank or flat page"
    for colour in (GAIN, LOSS, SIMULATED):
        assert colour_share(colours, colour) > 200, f"{colour} is not drawn"


def test_the_page_on_a_phone_and_on_paper_fits_its_width(browser: Any, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_html(report_document()), encoding="utf-8")
    ctx, page, attempted, errors = open_offline(browser, path, viewport={"width": PHONE[0], "height": PHONE[1]},
                                                is_mobile=True, has_touch=True)
    assert attempted == [] and errors == []
    # Nothing wider than the phone: wide tables and charts scroll inside their own box
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    overflowing = page.locator("section, .kpi, .banner, h1, p").evaluate_all(
        "els => els.filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5).map(e => e.outerHTML"
        ".slice(0, 80))")
    assert overflowing == []
    assert page.locator("svg.funnel").first.bounding_box()["width"] <= PHONE[0]
    page.screenshot(path=tmp_path / "phone.png", full_page=True)
    # On paper (A4, print styles): still nothing wider than the page, and a real PDF
    page.emulate_media(media="print")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    pdf = page.pdf(format="A4")
    ctx.close()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") > 2
