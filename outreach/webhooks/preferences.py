"""The preference center: what a customer chooses for themselves.

    GET  /p/{token}              the page (changes nothing; HEAD neither)
    POST /p/{token}              save: channels off, topics on/off, a break of 30/60/90 days
    POST /p/{token}/resubscribe  email a double opt-in link for a channel that is off
    GET  /r/{token}              that link's page: asks (changes nothing)
    POST /r/{token}              confirm: consent granted again, with the evidence

``{token}`` of ``/p`` is a message's signed preference token (every email
has the link; the unsubscribe page links to it). A POST must carry the
form's signed nonce — made for this page, at most a day old — so only a form
the page itself rendered can change anything. Changes that reduce contact
(a channel, a topic off, a break) go the way of every opt-out: on SQLite
through the durable inbox (``store.optouts``), answered once safe. A
channel comes back only with new evidence: for email a confirmation link
sent to the address on file (rate-limited, expiring, used once:
``store.confirmations``); for SMS a START reply from the number. The
confirmation email is sent here, directly through the email backend, not
through the outbox: the outbox's permission re-check would (rightly) refuse
an email to a customer without consent, and this is the one message they
asked for in order to give it — only to the address on file, only from
their own page, at most three a day.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from outreach.channels import Envelope, backend_for
from outreach.config import Settings
from outreach.domain import Channel, ConsentStatus, Topic
from outreach.errors import ChannelError
from outreach.sending import tokens
from outreach.store import confirmations, optouts, preferences
from outreach.store.engine import transaction
from outreach.store.models import CurrentConsent, Customer, Message, Suppression
from outreach.store.responses import OPT_OUT_REASONS
from outreach.webhooks import pages
from outreach.webhooks import preference_pages as ui

log = logging.getLogger(__name__)

#: Answers for a refused confirmation link.
REFUSED_STATUS = {confirmations.Outcome.USED: 409, confirmations.Outcome.EXPIRED: 410,
                  confirmations.Outcome.CHANGED: 409}
#: Database errors a page answers with "try again in a minute" (503).
UNAVAILABLE = (SQLAlchemyError, sqlite3.Error)


@dataclass(frozen=True)
class Who:
    """The customer a preference link is about."""

    message_id: int
    customer_id: int
    name: str
    addresses: dict[str, str | None]
    view: ui.View


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def routes(settings: Settings, engine: Engine, clock: Callable[[], datetime]) -> list[Route]:
    def load(message_id: int) -> Who:
        """The customer of a message, and what their page shows; BadToken when unknown."""
        now = clock()
        with transaction(engine) as session:
            customer = session.execute(select(Customer).join(Message, Message.customer_id == Customer.id)
                                       .where(Message.id == message_id)).scalar()
            if customer is None:
                raise tokens.BadToken("unknown message")
            cid = customer.id
            consent = dict(session.execute(select(CurrentConsent.channel, CurrentConsent.status)
                                           .where(CurrentConsent.customer_id == cid)).all())
            addresses = {"email": customer.email, "sms": customer.phone}
            reasons = {(ch, reason) for ch, address, reason in session.execute(
                select(Suppression.channel, Suppression.address, Suppression.reason).where(Suppression.address.in_(
                    [a for a in addresses.values() if a]))) if address == addresses[ch.value]}
            prefs = preferences.current(session, cid, now=now, pending=optouts.pending_changes(engine))
        turned_off = optouts.pending_channel_offs(engine, cid)
        channels = []
        for channel in Channel:
            held = {reason for ch, reason in reasons if ch is channel}
            if not addresses[channel.value]:
                state = "none"
            elif held - set(OPT_OUT_REASONS):
                state = "blocked"
            elif consent.get(channel) is ConsentStatus.GRANTED and not held and channel not in turned_off:
                state = "on"
            else:
                state = "off"
            channels.append(ui.ChannelView(channel.value, addresses[channel.value], state))
        view = ui.View(locale=customer.locale, timezone=customer.timezone, channels=channels,
                       topics_off=prefs.topics_off, paused_until=prefs.paused_until, now=now)
        return Who(message_id, cid, customer.name, addresses, view)

    async def who_of(request: Request) -> Who | Response:
        try:
            message_id = tokens.read_preferences_token(settings, request.path_params["token"])
            return await run_in_threadpool(load, message_id)
        except tokens.BadToken:
            return HTMLResponse(pages.bad_link(), status_code=400)

    def render(who: Who, *, status: int = 200, notice: str | None = None, alert: str | None = None) -> Response:
        url = tokens.preferences_url(settings, who.message_id).removeprefix(settings.public_url.rstrip("/"))
        body = ui.preferences(who.view, action=url, resubscribe_action=url + "/resubscribe",
                              nonce=tokens.form_nonce(settings, who.message_id, now=clock()),
                              notice=notice, alert=alert)
        return HTMLResponse(body, status_code=status)

    async def checked_form(request: Request, who: Who) -> FormData | Response:
        """The POSTed form, or the page refusing it (403) when its nonce is not this page's, fresh."""
        form = await request.form()
        try:
            tokens.check_form_nonce(settings, str(form.get("nonce") or ""), message_id=who.message_id, now=clock())
        except tokens.BadToken:
            return render(who, status=403, alert=ui.texts(who.view.locale)["stale"])
        return form

    async def page(request: Request) -> Response:
        who = await who_of(request)
        if isinstance(who, Response):
            return who
        if request.method != "POST":  # GET and HEAD only show
            return render(who)
        form = await checked_form(request, who)
        if isinstance(form, Response):
            return form
        t = ui.texts(who.view.locale)
        changes = _changes(who, form, now=clock(), how=f"on the preference page (link of message {who.message_id}), "
                                                        f"from {_client(request)}")
        if changes is None:
            return render(who, status=400, alert=t["invalid"])
        applied = True
        if changes:
            try:
                applied = await run_in_threadpool(optouts.submit, engine, *changes)
            except UNAVAILABLE:
                log.exception("preferences could not be saved")
                return render(who, status=503, alert=t["busy"])
        return render(await run_in_threadpool(load, who.message_id),
                      notice=t["saved"] if applied else t["saved_pending"])

    async def resubscribe(request: Request) -> Response:
        who = await who_of(request)
        if isinstance(who, Response):
            return who
        form = await checked_form(request, who)
        if isinstance(form, Response):
            return form
        t, locale = ui.texts(who.view.locale), who.view.locale
        back = tokens.preferences_url(settings, who.message_id)
        email = next(c for c in who.view.channels if c.channel == "email")
        if form.get("channel", "email") != "email":
            return render(who, status=400, alert=t["invalid"])
        if email.state != "off":
            text = {"on": t["email_on"], "none": t["no_address"].format(channel=pages.CHANNEL_NAMES[who.view.lang]
                    ["email"]), "blocked": t["blocked"].format(address=email.address)}[email.state]
            return HTMLResponse(ui.message(locale, "refused_title", text, back=back, role="alert"), status_code=409)
        address = email.address or ""

        def ask() -> int | None:
            with optouts.promptly(engine) as session:
                row = confirmations.request(session, customer_id=who.customer_id, channel=Channel.EMAIL,
                                            address=address, message_id=who.message_id, now=clock())
                return None if row is None else row.id

        try:
            request_id = await run_in_threadpool(ask)
        except UNAVAILABLE:
            log.exception("a confirmation request could not be stored")
            return render(who, status=503, alert=t["busy"])
        if request_id is None:
            return HTMLResponse(ui.message(locale, "refused_title", t["too_many"].format(
                count=confirmations.MAX_REQUESTS), back=back, role="alert"), status_code=429)
        hours = int(confirmations.VALID_FOR / timedelta(hours=1))
        subject, text, html = ui.confirmation_email(locale, name=who.name, address=address, hours=hours,
                                                    url=tokens.confirm_url(settings, request_id))
        envelope = Envelope(message_id=-request_id, channel="email", to=address, text=text, subject=subject,
                            html=html, idempotency_key=f"outreach-confirm-{request_id}")
        try:
            await run_in_threadpool(lambda: backend_for(settings, "email").deliver(envelope))
        except ChannelError as exc:
            log.warning("a confirmation email could not be sent: %s", exc)
            return HTMLResponse(ui.message(locale, "refused_title", t["cannot_send"], back=back, role="alert"),
                                status_code=503)
        return HTMLResponse(ui.message(locale, "sent_title", t["sent"].format(address=address, hours=hours),
                                       back=back))

    def pending_confirmation(request_id: int) -> tuple[confirmations.Outcome | None, str | None, str, str | None]:
        """(why it cannot be confirmed or None, locale, address, the preference page)."""
        with transaction(engine) as session:
            refused, row = confirmations.state(session, request_id, now=clock())
            if row is None:
                return confirmations.Outcome.UNKNOWN, None, "", None
            locale = session.scalar(select(Customer.locale).where(Customer.id == row.customer_id))
            back = tokens.preferences_url(settings, row.message_id) if row.message_id else None
            return refused, locale, row.address, back

    async def confirm(request: Request) -> Response:
        try:
            request_id = tokens.read_confirm_token(settings, request.path_params["token"])
        except tokens.BadToken:
            return HTMLResponse(pages.bad_link(), status_code=400)
        refused, locale, address, back = await run_in_threadpool(pending_confirmation, request_id)
        t = ui.texts(locale)
        if refused is None and request.method != "POST":  # a mail scanner's GET, or the customer's: the page asks
            return HTMLResponse(ui.confirm_question(locale, address))
        if refused is None:
            now = clock()
            evidence = (f"double opt-in: a confirmation link was emailed to {address} (request {request_id}, "
                        f"asked on the preference page), confirmed at {now:%Y-%m-%d %H:%M} UTC from "
                        f"{_client(request)}; told: '{t['statement']}'")

            def act() -> confirmations.Outcome:
                if not optouts.settled(engine):  # an older opt-out still waits: never overtake it
                    raise sqlite3.OperationalError("opt-outs wait in the inbox")
                with optouts.promptly(engine) as session:
                    return confirmations.confirm(session, request_id, now=now, evidence=evidence)

            try:
                outcome = await run_in_threadpool(act)
            except UNAVAILABLE:
                log.exception("a confirmation could not be recorded")
                return HTMLResponse(ui.message(locale, "refused_title", t["busy"], role="alert"), status_code=503)
            if outcome is confirmations.Outcome.CONFIRMED:
                return HTMLResponse(ui.message(locale, "confirmed_title", t["confirmed"].format(address=address),
                                               back=back))
            refused = outcome
        if refused is confirmations.Outcome.UNKNOWN:
            return HTMLResponse(pages.bad_link(), status_code=400)
        return HTMLResponse(ui.message(locale, "refused_title", t[refused.value], back=back, role="alert"),
                            status_code=REFUSED_STATUS[refused])

    return [
        Route("/p/{token}", page, methods=["GET", "POST"]),
        Route("/p/{token}/resubscribe", resubscribe, methods=["POST"]),
        Route("/r/{token}", confirm, methods=["GET", "POST"]),
    ]


def _changes(who: Who, form: FormData, *, now: datetime, how: str) -> list[optouts.OptOut] | None:
    """What the saved form changes, as opt-outs for the inbox (None: a value the page does not offer)."""
    view = who.view
    pause = str(form.get("pause") or "keep")
    if pause not in ("keep", "none", *map(str, ui.PAUSE_DAYS)):
        return None
    days = int(pause) if pause.isdigit() else None
    resume = pause == "none" and view.paused_until is not None
    shown_topics = set(str(form.get("topics_shown") or " ".join(t.value for t in Topic)).split())
    topics: dict[str, bool] = {str(t.value): f"topic_{t.value}" in form for t in Topic if t.value in shown_topics}
    changed = {topic: on for topic, on in topics.items() if on == (topic in view.topics_off)}
    told = ui.told(view, topics=changed, pause_days=days, resume=resume)
    change = preferences.PreferenceChange(
        customer_id=who.customer_id, topics=changed, resume=resume,
        pause_until=now + timedelta(days=days) if days else None, evidence=f"{how}; told: {told}")
    shown = set(str(form.get("channels_shown") or "").split())
    changes = [
        optouts.OptOut(kind="channel_off", channel=Channel(c.channel), address=c.address or "", received_at=now,
                       source=preferences.SOURCE, payload={"customer_id": who.customer_id, "evidence": (
                           f"unticked '{ui.CHANNEL_LABELS[view.lang][c.channel]}' ({c.address}) {how}")})
        for c in view.channels if c.state == "on" and c.channel in shown and f"channel_{c.channel}" not in form]
    if change:
        # A preference change is about the customer, not an address (the inbox's columns need one).
        changes.append(optouts.OptOut(kind="preferences", channel=Channel.EMAIL, address="", received_at=now,
                                      source=preferences.SOURCE, payload=change.to_payload()))
    return changes
