"""Email bodies compiled once per shape, filled per message.

Compiling MJML to HTML, tracking its links and quoted-printable encoding it
took about 0.15 ms of CPU a message — as much as everything else the worker
does for it — and it is the same work every time: what changes from one
customer to the next is the values, not the markup. So the MJML template is
also rendered with every ``{{ value }}`` replaced by a numbered slot (the
*skeleton*: the same for every customer the template takes the same
``{% if %}`` branches for), the skeleton is compiled once, and each message
only puts its values into the compiled HTML (:class:`Plan`).

The result is the same HTML as compiling each message, byte for byte, and
that is checked, not assumed:

* per message, the skeleton with its values put back must be exactly the
  MJML the template renders (a filter block or a ``{% set %}`` block that
  changes a value's text would make it differ): if not, the message is
  compiled the usual way;
* per skeleton, the first message is compiled both ways, and the plan is
  kept only if the two agree (a value in an attribute MJML computes from, a
  width, would make them differ);
* a slot may only stand in text or in an ``href``, ``src``, ``alt`` or
  ``title`` attribute, which MJML copies as they are;
* a value that could change the markup around it (a ``|safe`` value with
  ``href="`` or ``</body>`` in it, or the slot marker itself) sends its
  message the usual way.

The static pieces of the compiled HTML are the same string objects for
every message, so ``mime`` encodes each once (:func:`outreach.channels.mime`
``html_parts``).
"""

from __future__ import annotations

import contextvars
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any

from jinja2 import Environment, Undefined, nodes, pass_context
from markupsafe import escape

from outreach.errors import TemplateError
from outreach.sending.sandbox import MAX_OUTPUT
from outreach.sending.tracking import TRACKABLE, Tracker

#: Skeletons remembered per renderer (each holds one compiled body).
MAX_PLANS = 256
#: After this many renders of a template, its plans are given up if fewer
#: than half of them were reused (a template whose every message has its
#: own shape: a loop over each customer's items).
JUDGE_AFTER = 200
#: Attributes MJML copies into the HTML as they are: the only ones a slot may stand in.
COPIED_ATTRIBUTES = frozenset({"href", "src", "alt", "title"})

_HREF_VALUE = re.compile(r'href="([^"]*)"')
#: A tag and its attributes (MJML or HTML), to find where a slot stands.
_TAG = re.compile(r"<[A-Za-z][^<>]*>")
_ATTRIBUTE = re.compile(r'([A-Za-z_:][-A-Za-z0-9_:.]*)\s*=\s*"([^"]*)"')


class Marker:
    """The slot text of one renderer: ``OUTREACHSLOT<nonce>N<number>E``,
    ASCII letters and digits only (MJML rewrites other characters in
    attributes), with a nonce no template or customer will write."""

    def __init__(self) -> None:
        self.prefix = f"OUTREACHSLOT{secrets.token_hex(4)}N"
        self.pattern = re.compile(re.escape(self.prefix) + r"(\d+)E")

    def slot(self, number: int) -> str:
        return f"{self.prefix}{number}E"


#: While a skeleton renders: its marker and the values written so far.
_rendering: contextvars.ContextVar[tuple[Marker, list[Any]] | None] = contextvars.ContextVar(
    "outreach_skeleton", default=None)


@pass_context  # never evaluated at compile time: constants stay text, values become slots
def slot_finalize(context: Any, value: Any) -> Any:
    """Jinja's ``finalize`` of the skeleton environment: while a skeleton
    renders, each output value is kept and a slot is written in its place."""
    rendering = _rendering.get()
    if rendering is None or isinstance(value, Undefined):
        return value  # (an undefined value raises where it is written, at its line)
    marker, values = rendering
    values.append(value)
    return marker.slot(len(values) - 1)


def render_skeleton(marker: Marker, render: Callable[[], str]) -> tuple[str, list[Any]]:
    """(the skeleton, the values of its slots) of one render."""
    values: list[Any] = []
    token = _rendering.set((marker, values))
    try:
        return render(), values
    finally:
        _rendering.reset(token)


def escaped(values: list[Any]) -> list[str]:
    """What the HTML environment writes for each value (Jinja's autoescape)."""
    return [str(escape(v)) for v in values]


def fill(marker: Marker, skeleton: str, texts: list[str]) -> str:
    return marker.pattern.sub(lambda m: texts[int(m.group(1))], skeleton)


def slots_in_copied_places(marker: Marker, mjml: str) -> bool:
    """Whether every slot inside a tag stands in an attribute MJML copies."""
    for tag in _TAG.finditer(mjml):
        if marker.prefix not in tag.group(0):
            continue
        inside = _ATTRIBUTE.sub(lambda a: "" if a.group(1).lower() in COPIED_ATTRIBUTES else a.group(0),
                                tag.group(0))
        if marker.prefix in inside:
            return False
    return True


@dataclass(frozen=True)
class Link:
    """An ``href`` of the body whose URL is static text and slots."""

    parts: tuple[str | int, ...]


@dataclass(frozen=True)
class Plan:
    """A compiled body: static HTML, slots, links and the open pixel, in order."""

    pieces: tuple[str | int | Link | None, ...]  # text · slot number · link · None: the pixel

    @classmethod
    def of(cls, marker: Marker, html: str) -> Plan:
        pieces: list[str | int | Link | None] = []
        at = 0
        pixel_at = html.find("</body>")
        for match in _HREF_VALUE.finditer(html):
            if marker.prefix not in match.group(1) and not TRACKABLE.fullmatch(match.group(1)):
                continue
            pieces += _split(marker, html[at:match.start()], pixel_at - at)
            pieces.append(Link(tuple(p for p in _split(marker, match.group(1), -1) if p is not None)))
            at = match.end()
        pieces += _split(marker, html[at:], pixel_at - at if pixel_at >= at else -1)
        if pixel_at < 0:
            pieces.append(None)
        return cls(tuple(p for p in pieces if p != ""))

    def render(self, texts: list[str], *, link: Callable[[str], str], pixel: str) -> list[tuple[str, bool]]:
        """The body's pieces for these slot texts: (text, whether it is static)."""
        out: list[tuple[str, bool]] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append((piece, True))
            elif isinstance(piece, int):
                out.append((texts[piece], False))
            elif piece is None:
                out.append((pixel, False))
            else:
                url = "".join(part if isinstance(part, str) else texts[part] for part in piece.parts)
                out.append((f'href="{link(url)}"', False))
        return out


def _split(marker: Marker, text: str, pixel_at: int) -> list[str | int | None]:
    """``text`` as static strings and slot numbers; ``None`` (the pixel)
    before offset ``pixel_at`` when it falls in it."""
    if 0 <= pixel_at <= len(text):
        return [*_split(marker, text[:pixel_at], -1), None, *_split(marker, text[pixel_at:], -1)]
    pieces: list[str | int | None] = []
    at = 0
    for match in marker.pattern.finditer(text):
        pieces += [text[at:match.start()], int(match.group(1))]
        at = match.end()
    pieces.append(text[at:])
    return pieces


def unsafe_value(marker: Marker, texts: list[str]) -> bool:
    """Whether a value could change the markup around its slot."""
    return any(marker.prefix in t or 'href="' in t or "</body>" in t for t in texts)


class Bodies:
    """The tracked HTML bodies of one renderer: from the plan of a message's
    skeleton when there is one, else compiled. Plans are kept by (template
    file, skeleton): ``None`` for a skeleton that cannot be planned; a
    template whose shapes are rarely reused is not planned at all."""

    def __init__(self, tracker: Tracker, *, environment: Environment | None = None, enabled: bool = True) -> None:
        """``environment``: where the templates are read for :meth:`transparent`."""
        self.tracker = tracker
        self.environment = environment
        self.enabled = enabled
        self._transparent: dict[str, bool] = {}
        self.marker = Marker()
        self._plans: OrderedDict[tuple[str, str], Plan | None] = OrderedDict()
        self._renders: dict[str, list[int]] = {}  # template → [renders, plans reused]
        self._lock = threading.Lock()

    def body(self, *, key: str, render: Callable[[], str], skeleton: Callable[[], str], compile: Callable[[str], str],
             message_id: int, untracked: tuple[str, ...]) -> tuple[str, str, tuple[tuple[str, bool], ...] | None]:
        """(the MJML, the tracked HTML body, its pieces when it came from a
        plan) of one message. ``key``: its template file; ``render()``: its
        MJML rendered; ``skeleton()``: the same render with slots (in the
        skeleton environment); ``compile``: MJML to HTML. A template whose
        values reach its output unchanged (:func:`transparent`) is rendered
        once, as a skeleton; any other also as itself, to compare."""
        if not (self.enabled and self.wanted(key)):
            mjml = render()
            return mjml, self.tracker.html(compile(mjml), message_id, untracked), None
        marker = self.marker
        shape, values = render_skeleton(marker, skeleton)
        try:
            texts = escaped(values)
        except Exception:  # noqa: BLE001 - a value that cannot be written: the plain render says where
            texts = None
        filled = fill(marker, shape, texts) if texts is not None else None
        mjml = filled if filled is not None and len(filled) <= MAX_OUTPUT and self.transparent(key) else render()
        if texts is None or unsafe_value(marker, texts) or filled != mjml:
            return mjml, self.tracker.html(compile(mjml), message_id, untracked), None
        seen, plan = self.get(key, shape)
        if plan is not None:
            parts = self._render(plan, texts, message_id, untracked)
            return mjml, "".join(text for text, _ in parts), tuple(parts)
        html = self.tracker.html(compile(mjml), message_id, untracked)
        if not seen:
            self.put(key, shape, self._plan(shape, texts, html, compile, message_id, untracked))
        return mjml, html, None

    def transparent(self, name: str) -> bool:
        """Whether every value ``name`` writes reaches its output as written
        (remembered until the templates change)."""
        found = self._transparent.get(name)
        if found is None:
            found = self._transparent[name] = self.environment is not None and transparent(self.environment, name)
        return found

    def _plan(self, shape: str, texts: list[str], html: str, compile: Callable[[str], str], message_id: int,
              untracked: tuple[str, ...]) -> Plan | None:
        """The plan of ``shape``, if it gives exactly ``html`` (this message
        compiled the usual way); None if it cannot."""
        if not slots_in_copied_places(self.marker, shape):
            return None
        try:
            plan = Plan.of(self.marker, compile(shape))
        except TemplateError:
            return None
        parts = self._render(plan, texts, message_id, untracked)
        return plan if "".join(text for text, _ in parts) == html else None

    def _render(self, plan: Plan, texts: list[str], message_id: int,
                untracked: tuple[str, ...]) -> list[tuple[str, bool]]:
        return plan.render(texts, link=self.tracker.link(message_id, untracked),
                           pixel=self.tracker.pixel(message_id))

    def wanted(self, name: str) -> bool:
        renders, reused = self._renders.get(name, (0, 0))
        return renders < JUDGE_AFTER or reused * 2 >= renders

    def get(self, name: str, skeleton: str) -> tuple[bool, Plan | None]:
        """(whether the skeleton was seen, its plan)."""
        with self._lock:
            count = self._renders.setdefault(name, [0, 0])
            count[0] += 1
            key = (name, skeleton)
            if key not in self._plans:
                return False, None
            self._plans.move_to_end(key)
            plan = self._plans[key]
            if plan is not None:
                count[1] += 1
            return True, plan

    def put(self, name: str, skeleton: str, plan: Plan | None) -> None:
        with self._lock:
            self._plans[(name, skeleton)] = plan
            while len(self._plans) > MAX_PLANS:
                self._plans.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()
            self._renders.clear()
            self._transparent.clear()


#: Nodes after which a written value can still be changed or not written as
#: is: a block filter, a captured block or macro, an autoescape switch, an import.
_CAPTURING = (nodes.FilterBlock, nodes.AssignBlock, nodes.CallBlock, nodes.Macro, nodes.EvalContextModifier,
              nodes.Import, nodes.FromImport)
#: Calls that return rendered output: a block's parent, another block, a macro's caller, a recursive loop.
_RENDERING_CALLS = frozenset({"super", "caller", "loop", "self"})


def transparent(environment: Environment, name: str, *, seen: frozenset[str] = frozenset()) -> bool:
    """Whether each value the template ``name`` writes (with every template
    it extends or includes, by constant name) goes to its output exactly as
    written: nothing in it captures or transforms rendered text. Then the
    skeleton with its values put back *is* the render, and one render of it
    is enough."""
    if name in seen:
        return False
    try:
        source, _, _ = environment.loader.get_source(environment, name)  # type: ignore[union-attr]
        tree = environment.parse(source)
    except Exception:  # noqa: BLE001 - not found, not parsable: rendered the plain way, which says why
        return False
    if any(True for _ in tree.find_all(_CAPTURING)):
        return False
    for call in tree.find_all(nodes.Call):
        target = call.node
        while isinstance(target, nodes.Getattr | nodes.Getitem):
            target = target.node
        if isinstance(target, nodes.Name) and target.name in _RENDERING_CALLS:
            return False
    for template in chain((n.template for n in tree.find_all(nodes.Extends)),
                          (n.template for n in tree.find_all(nodes.Include))):
        if not (isinstance(template, nodes.Const) and isinstance(template.value, str)):
            return False
        if not transparent(environment, template.value, seen=seen | {name}):
            return False
    return True
