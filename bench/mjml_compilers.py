"""Choose the MJML compiler by measurement: mrml (Rust binding) vs mjml (pure-Python port).

    python bench/mjml_compilers.py

Compiles the shipped email templates (rendered for a sample customer, English
and Chinese) and one minimal document per MJML component a marketer uses;
prints, per compiler, whether each compiles, whether the output keeps the
content (text, link, Chinese characters), and the median time per compile.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RUNS = 30

COMPONENTS = {
    "mj-text": '<mj-text>Hello 你好 MARK</mj-text>',
    "mj-button": '<mj-button href="https://x.test/MARK">Go MARK</mj-button>',
    "mj-image": '<mj-image src="https://x.test/MARK.png" alt="MARK" />',
    "mj-divider": '<mj-divider /><mj-text>MARK</mj-text>',
    "mj-spacer": '<mj-spacer height="20px" /><mj-text>MARK</mj-text>',
    "mj-table": '<mj-table><tr><td>MARK</td><td>¥68</td></tr></mj-table>',
    "mj-social": '<mj-social><mj-social-element name="facebook" href="https://x.test/MARK">MARK</mj-social-element></mj-social>',
    "mj-navbar": '<mj-navbar><mj-navbar-link href="https://x.test/MARK">MARK</mj-navbar-link></mj-navbar>',
    "mj-accordion": '<mj-accordion><mj-accordion-element><mj-accordion-title>MARK</mj-accordion-title>'
                    '<mj-accordion-text>t</mj-accordion-text></mj-accordion-element></mj-accordion>',
    "mj-carousel": '<mj-carousel><mj-carousel-image src="https://x.test/MARK.png" /></mj-carousel>',
    "mj-raw": '<mj-raw><p>MARK</p></mj-raw>',
}
SECTIONED = {"mj-hero": '<mj-hero background-url="https://x.test/h.png"><mj-text>MARK</mj-text></mj-hero>'}


def document(component: str, body: str) -> str:
    if component in SECTIONED:
        return f"<mjml><mj-head><mj-preview>PREVIEW</mj-preview></mj-head><mj-body>{body}</mj-body></mjml>"
    return (f"<mjml><mj-head><mj-preview>PREVIEW</mj-preview></mj-head><mj-body><mj-section>"
            f"<mj-column>{body}</mj-column></mj-section></mj-body></mjml>")


def compile_mrml(source: str) -> str:
    import mrml

    return str(mrml.to_html(source).content)


def compile_mjml(source: str) -> str:
    import mjml

    result = mjml.mjml_to_html(source)
    if result.errors:
        raise ValueError(str(result.errors))
    return str(result.html)


COMPILERS = {"mrml": compile_mrml, "mjml (pure Python)": compile_mjml}


def well_formed(html: str) -> bool:
    HTMLParser().feed(html)
    return "<html" in html and "</html>" in html


def shipped_templates() -> dict[str, str]:
    """The shipped email templates, rendered through Jinja for a sample customer."""
    sys.path.insert(0, str(ROOT))
    from outreach.config import load_settings
    from outreach.domain import CustomerType
    from outreach.sending.render import Renderer, customer_context
    from outreach.store.models import Customer

    renderer = Renderer(settings=load_settings(templates_dir=ROOT / "templates"))
    sources = {}
    for folder in sorted((ROOT / "templates").iterdir()):
        if folder.name.startswith("_") or not (folder / "email.mjml").exists():
            continue
        for locale, name in (("en", "Ada Lovelace"), ("zh_CN", "王小明")):
            customer = Customer(id=1, external_id="C1", name=name, locale=locale, timezone="UTC",
                                customer_type=CustomerType.RETAIL, attributes={}, birthday=date(1990, 1, 1),
                                created_at=datetime(2026, 1, 1), updated_at=datetime(2026, 1, 1))
            customer.tags = []
            context = {"customer": customer_context(customer), "rule": {"name": folder.name},
                       "message": {"id": 1}, "unsubscribe_url": "https://t.example/u/x"}
            template = renderer._pick(folder.name, "email", "mjml", locale)
            sources[f"{folder.name} ({locale})"] = renderer._render(template, context, html=True)
    return sources


def timed(fn, source: str) -> float:  # type: ignore[no-untyped-def]
    fn(source)
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn(source)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    console = Console(width=140)
    coverage = Table(title="Component coverage: compiles, well-formed, content kept (MARK / preview)")
    coverage.add_column("component")
    for name in COMPILERS:
        coverage.add_column(name)
    score = dict.fromkeys(COMPILERS, 0)
    for component, body in {**COMPONENTS, **SECTIONED}.items():
        row = [component]
        for name, fn in COMPILERS.items():
            try:
                html = fn(document(component, body))
                ok = well_formed(html) and "MARK" in html and "PREVIEW" in html
                row.append("ok" if ok else "content lost")
                score[name] += ok
            except Exception as exc:  # noqa: BLE001 - a compiler failing is the measurement
                row.append(f"error: {str(exc)[:50]}")
        coverage.add_row(*row)
    console.print(coverage)
    speed = Table(title=f"Shipped templates: median ms per compile over {RUNS} runs")
    speed.add_column("template")
    for name in COMPILERS:
        speed.add_column(name, justify="right")
    for label, source in shipped_templates().items():
        row = [label]
        for fn in COMPILERS.values():
            try:
                html = fn(source)
                keeps = "翠叶茶庄" in html if "zh_CN" in label else "Jade Leaf Tea" in html
                row.append(f"{timed(fn, source):.2f}" + ("" if keeps and well_formed(html) else " (content lost)"))
            except Exception as exc:  # noqa: BLE001
                row.append(f"error: {str(exc)[:40]}")
        speed.add_row(*row)
    console.print(speed)
    total = len(COMPONENTS) + len(SECTIONED)
    console.print("components fully supported: " + ", ".join(f"{n} {s}/{total}" for n, s in score.items()))


if __name__ == "__main__":
    main()
