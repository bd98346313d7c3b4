"""The preference center's pages and its confirmation email, in English or
Chinese by the customer's locale.

One form, three fieldsets (channels, topics, a break), each choice a label
of at least 48 px around its control; no script and nothing fetched from
elsewhere (the style is ``pages.STYLE``). The words the customer reads here
are also what the evidence of their change quotes (:func:`told`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape

from outreach.clock import zone_or_utc
from outreach.domain import Topic
from outreach.webhooks.pages import CHANNEL_NAMES, lang_of, page

#: The breaks a customer may take, in days.
PAUSE_DAYS = (30, 60, 90)

TOPICS = {
    "en": {
        Topic.OFFERS: ("Offers and recommendations",
                       "Discounts, products picked for you, a reminder of what you left in your cart"),
        Topic.CARE: ("Care messages", "Birthday and anniversary wishes, a note from us when it has been a while"),
        Topic.NEWS: ("News", "New harvests, new products, our newsletter"),
        Topic.FEEDBACK: ("Surveys", "A short question about how we did"),
    },
    "zh": {
        Topic.OFFERS: ("优惠与推荐", "折扣、为您挑选的商品、购物车提醒"),
        Topic.CARE: ("关怀问候", "生日和周年祝福，久未联系时的问候"),
        Topic.NEWS: ("新品资讯", "新茶上市、新品介绍、我们的通讯"),
        Topic.FEEDBACK: ("满意度调查", "关于我们服务的简短问题"),
    },
}

TEXT = {
    "en": {
        "title": "Your preferences",
        "intro": "Choose how we contact you and what about. Changes take effect at once.",
        "channels": "How we may contact you",
        "to": "to {address}",
        "is_off": "{channel} to {address} is off.",
        "resubscribe": "Email me a link to turn email back on",
        "resubscribe_hint": "We send a confirmation link to {address}; email starts again only once you use it.",
        "sms_back": "To receive SMS again, reply START to one of our text messages.",
        "blocked": "We cannot reach you at {address} (it bounced or reported our email as spam).",
        "no_address": "We have no {channel} address for you.",
        "topics": "What you would like to hear about",
        "pause": "Take a break",
        "pause_none": "No break",
        "pause_for": "Pause all marketing for {days} days (until {date})",
        "pause_keep": "Keep my break until {date}",
        "pause_end": "End my break now",
        "orders": "Messages about your own orders are not marketing: topics and breaks do not stop them.",
        "save": "Save my preferences",
        "saved": "Your preferences are saved.",
        "saved_pending": "Your preferences are saved; they take effect within a minute.",
        "sent_title": "Check your inbox",
        "sent": "We sent a link to {address}. Use it within {hours} hours to turn email back on; "
                "nothing changes until you do.",
        "back": "Back to your preferences",
        "statement": "You agree to receive our email again: the topics you chose on your preference page, "
                     "until you change them. Every email has a link to change or stop them.",
        "confirm_title": "Turn email back on?",
        "confirm": "Email {address} again?",
        "confirm_button": "Yes, email me again",
        "confirmed_title": "Email is on again",
        "confirmed": "We will email {address} again. You can change what you receive at any time.",
        "refused_title": "This did not work",
        "expired": "This link has expired. Ask for a new one on your preference page.",
        "used": "This link was used already.",
        "changed": "The address on file changed since this link was sent. Ask for a new one on your "
                   "preference page.",
        "too_many": "We already sent {count} confirmation emails today. Please look for them in your inbox "
                    "(and spam folder), or try again tomorrow.",
        "email_on": "Email is on already.",
        "cannot_send": "We could not send the email just now. Please try again in a few minutes.",
        "busy": "We could not save this just now. Please try again in a minute.",
        "stale": "This form is out of date. Please open the page again and make your choice once more.",
        "invalid": "That choice is not one this page offers. Please open the page again.",
        "mail_subject": "Confirm: turn our email back on",
        "mail": "Hello {name},\n\nYou asked on your preference page to receive our email again at {address}.\n"
                "To confirm, open this link within {hours} hours:\n\n{url}\n\n"
                "If you did not ask for this, ignore this email: nothing changes.",
    },
    "zh": {
        "title": "订阅偏好设置",
        "intro": "选择我们联系您的方式和内容。更改立即生效。",
        "channels": "联系方式",
        "to": "发送至 {address}",
        "is_off": "发送至 {address} 的{channel}已关闭。",
        "resubscribe": "发送链接到我的邮箱以重新开启邮件",
        "resubscribe_hint": "我们会向 {address} 发送确认链接；您使用该链接后才会恢复发送邮件。",
        "sms_back": "如需重新接收短信，请回复 START 到我们的任意一条短信。",
        "blocked": "我们无法通过 {address} 联系您（邮件被退回或被标记为垃圾邮件）。",
        "no_address": "我们没有您的{channel}联系方式。",
        "topics": "您希望收到的内容",
        "pause": "暂停一段时间",
        "pause_none": "不暂停",
        "pause_for": "暂停所有营销消息 {days} 天（至 {date}）",
        "pause_keep": "保持暂停至 {date}",
        "pause_end": "立即结束暂停",
        "orders": "关于您订单的消息不属于营销：主题和暂停设置不会影响它们。",
        "save": "保存我的设置",
        "saved": "您的设置已保存。",
        "saved_pending": "您的设置已保存，将在一分钟内生效。",
        "sent_title": "请查收邮件",
        "sent": "我们已向 {address} 发送了一个链接。请在 {hours} 小时内使用它来重新开启邮件；"
                "在此之前不会有任何更改。",
        "back": "返回订阅偏好设置",
        "statement": "您同意重新接收我们的邮件：即您在偏好设置中选择的主题，直到您更改为止。"
                     "每封邮件都附有更改或退订的链接。",
        "confirm_title": "重新开启邮件？",
        "confirm": "重新向 {address} 发送邮件？",
        "confirm_button": "是的，重新给我发邮件",
        "confirmed_title": "邮件已重新开启",
        "confirmed": "我们将重新向 {address} 发送邮件。您可以随时更改接收的内容。",
        "refused_title": "操作未成功",
        "expired": "此链接已过期。请在订阅偏好设置页面重新申请。",
        "used": "此链接已被使用过。",
        "changed": "自发送此链接以来，您登记的地址已更改。请在订阅偏好设置页面重新申请。",
        "too_many": "今天我们已经发送了 {count} 封确认邮件。请在收件箱（和垃圾邮件）中查找，或明天再试。",
        "email_on": "邮件已经是开启状态。",
        "cannot_send": "我们暂时无法发送邮件。请几分钟后再试。",
        "busy": "暂时无法保存。请一分钟后再试。",
        "stale": "此表单已过期。请重新打开页面并再次选择。",
        "invalid": "此选项不在页面提供的范围内。请重新打开页面。",
        "mail_subject": "请确认：重新接收我们的邮件",
        "mail": "{name}，您好：\n\n您在订阅偏好设置中申请重新通过 {address} 接收我们的邮件。\n"
                "请在 {hours} 小时内打开以下链接确认：\n\n{url}\n\n"
                "如果这不是您本人的操作，请忽略此邮件，不会有任何更改。",
    },
}
#: A channel's name as the label of its checkbox.
CHANNEL_LABELS = {"en": {"email": "Email", "sms": "SMS (text messages)"}, "zh": {"email": "邮件", "sms": "短信"}}
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


@dataclass(frozen=True)
class ChannelView:
    channel: str
    address: str | None
    #: ``on`` (consent, not suppressed), ``off`` (may come back with new evidence),
    #: ``blocked`` (suppressed by a bounce or a complaint), ``none`` (no address).
    state: str


@dataclass(frozen=True)
class View:
    """What the preference page shows one customer."""

    locale: str | None
    timezone: str
    channels: list[ChannelView]
    topics_off: frozenset[str] = frozenset()
    paused_until: datetime | None = None
    now: datetime = field(default_factory=lambda: datetime(1970, 1, 1))

    @property
    def lang(self) -> str:
        return lang_of(self.locale)


def texts(locale: str | None) -> dict[str, str]:
    return TEXT[lang_of(locale)]


def local_date(moment: datetime, timezone: str, lang: str) -> str:
    """A naive-UTC moment as a date in the customer's time zone."""
    day = moment.replace(tzinfo=UTC).astimezone(zone_or_utc(timezone)).date()
    return f"{day.year}年{day.month}月{day.day}日" if lang == "zh" else f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def topic_label(topic: str, lang: str) -> str:
    name, description = TOPICS[lang][Topic(topic)]
    return f"{name}: {description}"


def told(view: View, *, topics: dict[str, bool], pause_days: int | None, resume: bool) -> str:
    """What the page said for the choices the customer changed (evidence)."""
    lang, t = view.lang, texts(view.locale)
    said = [f"'{topic_label(topic, lang)}' {'on' if on else 'off'}" for topic, on in sorted(topics.items())]
    if pause_days:
        said.append(f"'{t['pause']}: {t['pause_for'].format(days=pause_days, date='…')}'")
    if resume:
        said.append(f"'{t['pause']}: {t['pause_end']}'")
    return "; ".join(said)


def _option(kind: str, name: str, value: str, label: str, hint: str = "", *, checked: bool) -> str:
    hint_html = f'<span class="hint">{escape(hint)}</span>' if hint else ""
    return (f'<label class="option"><input type="{kind}" name="{name}" value="{value}"'
            f'{" checked" if checked else ""}><span><strong>{escape(label)}</strong>{hint_html}</span></label>')


def _channel(view: View, ch: ChannelView, nonce_form: str) -> str:
    lang, t = view.lang, texts(view.locale)
    name, label = CHANNEL_NAMES[lang][ch.channel], CHANNEL_LABELS[lang][ch.channel]
    address = escape(ch.address or "")
    if ch.state == "on":
        return _option("checkbox", f"channel_{ch.channel}", "on", label, t["to"].format(address=ch.address),
                       checked=True)
    if ch.state == "none":
        return f'<p class="off">{t["no_address"].format(channel=name)}</p>'
    if ch.state == "blocked":
        return f'<p class="off">{t["blocked"].format(address=address)}</p>'
    off = t["is_off"].format(channel=label.split(" (")[0], address=address)
    if ch.channel == "sms":
        return f'<p class="off">{off} {t["sms_back"]}</p>'
    return (f'<div class="off"><p>{off}</p><button type="submit" class="secondary" form="{nonce_form}" '
            f'name="channel" value="email">{t["resubscribe"]}</button>'
            f'<span class="hint">{t["resubscribe_hint"].format(address=address)}</span></div>')


def preferences(view: View, *, action: str, resubscribe_action: str, nonce: str,
                notice: str | None = None, alert: str | None = None) -> str:
    """The preference page; ``notice`` (a saved change) or ``alert`` (a refusal) above the form."""
    lang, t = view.lang, texts(view.locale)
    shown = [c.channel for c in view.channels if c.state == "on"]
    parts = []
    if notice:
        parts.append(f'<p class="status" role="status">{escape(notice)}</p>')
    if alert:
        parts.append(f'<p class="alert" role="alert">{escape(alert)}</p>')
    parts.append(f"<p>{t['intro']}</p>")
    parts.append(f'<form method="post" action="{escape(action)}">'
                 f'<input type="hidden" name="nonce" value="{escape(nonce)}">'
                 f'<input type="hidden" name="channels_shown" value="{" ".join(shown)}">'
                 f'<input type="hidden" name="topics_shown" value="{" ".join(t.value for t in Topic)}">')
    parts.append(f"<fieldset><legend>{t['channels']}</legend>"
                 + "".join(_channel(view, ch, "resubscribe") for ch in view.channels) + "</fieldset>")
    parts.append(f"<fieldset><legend>{t['topics']}</legend>" + "".join(
        _option("checkbox", f"topic_{topic.value}", "on", *TOPICS[lang][topic], checked=topic not in view.topics_off)
        for topic in Topic) + "</fieldset>")
    pauses = []
    if view.paused_until is not None:
        until = local_date(view.paused_until, view.timezone, lang)
        pauses += [_option("radio", "pause", "keep", t["pause_keep"].format(date=until), checked=True),
                   _option("radio", "pause", "none", t["pause_end"], checked=False)]
    else:
        pauses.append(_option("radio", "pause", "none", t["pause_none"], checked=True))
    pauses += [_option("radio", "pause", str(days), t["pause_for"].format(
        days=days, date=local_date(view.now + timedelta(days=days), view.timezone, lang)), checked=False)
        for days in PAUSE_DAYS]
    parts.append(f"<fieldset><legend>{t['pause']}</legend>" + "".join(pauses) + "</fieldset>")
    parts.append(f'<p class="hint">{t["orders"]}</p><button type="submit">{t["save"]}</button></form>')
    parts.append(f'<form id="resubscribe" method="post" action="{escape(resubscribe_action)}">'
                 f'<input type="hidden" name="nonce" value="{escape(nonce)}"></form>')
    return page(t["title"], "".join(parts), lang)


def message(locale: str | None, title_key: str, text: str, *, back: str | None = None, role: str = "status") -> str:
    """A page of one message (sent, confirmed, refused), with a way back to the preferences."""
    t = texts(locale)
    back_html = f'<p><a href="{escape(back)}">{t["back"]}</a></p>' if back else ""
    css = "status" if role == "status" else "alert"
    return page(t[title_key], f'<p class="{css}" role="{role}">{escape(text)}</p>{back_html}', lang_of(locale))


def confirm_question(locale: str | None, address: str) -> str:
    """The double opt-in link's page: asks (a GET changes nothing), the button confirms."""
    t = texts(locale)
    body = (f"<p>{escape(t['confirm'].format(address=address))}</p><p>{t['statement']}</p>"
            f'<form method="post"><button type="submit">{t["confirm_button"]}</button></form>')
    return page(t["confirm_title"], body, lang_of(locale))


def confirmation_email(locale: str | None, *, name: str, address: str, url: str, hours: int) -> tuple[str, str, str]:
    """(subject, text, HTML) of the double opt-in email."""
    t = texts(locale)
    text = t["mail"].format(name=name or address, address=address, hours=hours, url=url)
    paragraphs = "".join(
        f'<p><a href="{escape(url)}">{escape(url)}</a></p>' if block.strip() == url else
        f"<p>{escape(block).replace(chr(10), '<br>')}</p>" for block in text.split("\n\n"))
    html = (f'<!doctype html><html lang="{"zh-CN" if lang_of(locale) == "zh" else "en"}"><head><meta charset="utf-8">'
            f"<title>{escape(t['mail_subject'])}</title></head><body style=\"font-family:sans-serif;"
            f'color:#2d3a2e;max-width:36rem\">{paragraphs}</body></html>')
    return t["mail_subject"], text, html
