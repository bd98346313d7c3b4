"""The links in a message: one-click unsubscribe, survey answers, the open pixel, click redirects
(the preference page's: ``preferences``).

Every link carries a signed token (``outreach.sending.tokens``): a tampered
or foreign token is a 400 page and stores nothing. A GET or HEAD of the
unsubscribe link only asks (mail scanners follow and prefetch links); the
confirming POST — or a mail client's RFC 8058 one-click POST — unsubscribes.
No safe method changes anything: a HEAD of the pixel or of a click link
records no open or click, and OPTIONS is answered 405.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from outreach.config import Settings
from outreach.domain import Channel, EventType
from outreach.sending import tokens
from outreach.store import optouts, responses, surveys
from outreach.store.engine import transaction
from outreach.store.models import Customer, Message, Rule
from outreach.webhooks import pages
from outreach.webhooks.batching import GroupCommit

log = logging.getLogger(__name__)

#: A transparent 1×1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
#: The scale of an answer link in a rule that names no survey.
DEFAULT_SURVEY = "nps"
#: Control characters (NUL included) in a comment become spaces.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: The open pixel must be fetched each time it is shown.
NO_STORE = {"Cache-Control": "no-store, max-age=0"}
#: Seconds a sender is asked to wait before retrying when the database is down.
RETRY_AFTER_S = "5"


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    def recipient_of(message_id: int) -> tuple[str | None, str, str]:
        """(locale, channel, address) of a message, for the pages."""
        with transaction(engine) as session:
            row = session.execute(
                select(Customer.locale, Message.channel, Message.to_address)
                .join(Customer, Customer.id == Message.customer_id)
                .where(Message.id == message_id)
            ).first()
        if row is None:
            raise tokens.BadToken("unknown message")
        return row[0], row[1].value, row[2] or ""

    async def unsubscribe(request: Request) -> Response:
        try:
            message_id = tokens.read_unsubscribe_token(settings, request.path_params["token"])
            locale, channel, address = await run_in_threadpool(recipient_of, message_id)
        except tokens.BadToken:
            return HTMLResponse(pages.bad_link(), status_code=400)
        manage = tokens.preferences_url(settings, message_id)
        if request.method != "POST":
            # Mail scanners follow and prefetch links: a safe method (GET,
            # HEAD) only asks, it never unsubscribes.
            return HTMLResponse(pages.confirm(locale=locale, channel=channel, address=address,
                                              preferences_url=manage))

        optout = optouts.OptOut(kind="unsubscribe", channel=Channel(channel), address=address,
                                received_at=clock(), source="unsubscribe-link", message_id=message_id)
        await run_in_threadpool(optouts.submit, engine, optout)
        return HTMLResponse(pages.done(locale=locale, channel=channel, address=address, preferences_url=manage))

    events: GroupCommit[responses.LinkEvent] = GroupCommit(
        lambda batch: responses.record_link_events(engine, batch))

    async def record(message_id: int, kind: EventType, source: str, *, url: str | None = None,
                     payload: dict[str, Any] | None = None) -> Response | None:
        """None once the event is stored; otherwise the 503 to answer (the sender may retry)."""
        try:
            await events.submit(responses.LinkEvent(type=kind, message_id=message_id, occurred_at=clock(),
                                                    source=source, url=url, payload=payload))
        except SQLAlchemyError:
            log.exception("a %s could not be stored", kind.value)
            return Response("the database cannot be reached, try again later", status_code=503,
                            headers={"Retry-After": RETRY_AFTER_S})
        return None

    async def open_pixel(request: Request) -> Response:
        try:
            message_id = tokens.read_open_token(settings, request.path_params["token"])
        except tokens.BadToken:
            return Response(PIXEL, media_type="image/gif", headers=NO_STORE)
        if request.method != "HEAD":  # a prefetch or a link checker's HEAD: not the image being shown
            failed = await record(message_id, EventType.OPEN, "pixel",
                                  payload={"user_agent": request.headers.get("user-agent", "")})
            if failed is not None:
                return failed
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)

    async def click(request: Request) -> Response:
        try:
            message_id, url = tokens.read_click_token(settings, request.path_params["token"])
        except tokens.BadToken:
            return HTMLResponse(pages.bad_link(), status_code=400)
        if request.method != "HEAD":  # a link checker's HEAD is not a click
            failed = await record(message_id, EventType.CLICK, "redirect", url=url)
            if failed is not None:
                return failed
        return RedirectResponse(url, status_code=302)

    def survey_of_message(message_id: int) -> tuple[str | None, int, int, str]:
        """(locale, customer, rule, survey kind) of a message; BadToken when unknown."""
        with transaction(engine) as session:
            row = session.execute(
                select(Customer.locale, Message.customer_id, Message.rule_id, Rule.definition)
                .join(Customer, Customer.id == Message.customer_id).join(Rule, Rule.id == Message.rule_id)
                .where(Message.id == message_id)).first()
        if row is None:
            raise tokens.BadToken("unknown message")
        return row[0], row[1], row[2], surveys.survey_of(row[3]) or DEFAULT_SURVEY

    async def survey(request: Request) -> Response:
        try:
            message_id, score = tokens.read_survey_token(settings, request.path_params["token"])
            locale, customer_id, rule_id, kind = await run_in_threadpool(survey_of_message, message_id)
        except tokens.BadToken:
            return HTMLResponse(pages.bad_link(), status_code=400)
        scale = surveys.SCALES[kind]
        if score not in scale:
            return HTMLResponse(pages.bad_link(), status_code=400)
        top = scale.stop - 1
        if request.method != "POST":  # a scanner's prefetch, or the customer's click: the page asks
            return HTMLResponse(pages.survey(locale=locale, score=score, top=top))
        comment = str((await request.form()).get("comment", "") or "")

        def act() -> None:
            with transaction(engine) as session:
                surveys.record_answer(session, message_id=message_id, customer_id=customer_id, rule_id=rule_id,
                                      kind=kind, score=score, source="survey-link", answered_at=clock(),
                                      comment=_CONTROL.sub(" ", comment))

        await run_in_threadpool(act)
        return HTMLResponse(pages.thanks(locale=locale, score=score, top=top))

    return [
        Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/s/{token}", survey, methods=["GET", "POST"]),
        Route("/o/{token}", open_pixel),
        Route("/c/{token}", click),
    ]
