"""The few pages a customer sees, in English or Chinese by their locale."""

from __future__ import annotations

from html import escape

TEXT = {
    "en": {
        "confirm_title": "Unsubscribe",
        "confirm": "Stop receiving {channel} messages from us at {address}?",
        "button": "Unsubscribe",
        "done_title": "You are unsubscribed",
        "done": "You will not receive {channel} messages from us at {address} any more.",
        "survey_title": "Your answer",
        "survey": "You are giving us {score} out of {top}. Anything you would like to add?",
        "survey_button": "Send my answer",
        "thanks_title": "Thank you",
        "thanks": "Your answer ({score} out of {top}) is recorded. Thank you for telling us.",
        "bad_title": "This link is not valid",
        "bad": "The link is incomplete or was changed. Please use the link from the message, "
               "or reply STOP to an SMS.",
    },
    "zh": {
        "confirm_title": "退订",
        "confirm": "确定不再通过{channel}（{address}）接收我们的消息吗？",
        "button": "确认退订",
        "done_title": "您已成功退订",
        "done": "我们将不再通过{channel}（{address}）向您发送消息。",
        "survey_title": "您的评分",
        "survey": "您给我们的评分是 {score} 分（满分 {top} 分）。还有什么想告诉我们的吗？",
        "survey_button": "提交评分",
        "thanks_title": "谢谢您",
        "thanks": "您的评分（{score} / {top}）已记录。感谢您的反馈。",
        "bad_title": "链接无效",
        "bad": "链接不完整或已被修改。请使用消息中的链接，或回复TD退订短信。",
    },
}
CHANNEL_NAMES = {"en": {"email": "email", "sms": "SMS"}, "zh": {"email": "邮件", "sms": "短信"}}


def _lang(locale: str | None) -> str:
    return "zh" if (locale or "").lower().startswith("zh") else "en"


def _page(title: str, body: str, lang: str) -> str:
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>body{{font-family:system-ui,'PingFang SC',sans-serif;"
        "max-width:32rem;margin:4rem auto;padding:0 1rem;color:#2d3a2e}button{background:#2f7d4f;"
        "color:#fff;border:0;border-radius:6px;padding:.7rem 1.4rem;font-size:1rem;cursor:pointer}"
        f"</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def confirm(*, locale: str | None, channel: str, address: str) -> str:
    lang = _lang(locale)
    t = TEXT[lang]
    question = t["confirm"].format(channel=CHANNEL_NAMES[lang][channel], address=escape(address))
    form = (f'<p>{question}</p><form method="post"><input type="hidden" name="List-Unsubscribe" '
            f'value="One-Click"><button type="submit">{t["button"]}</button></form>')
    return _page(t["confirm_title"], form, lang)


def done(*, locale: str | None, channel: str, address: str) -> str:
    lang = _lang(locale)
    t = TEXT[lang]
    text = t["done"].format(channel=CHANNEL_NAMES[lang][channel], address=escape(address))
    return _page(t["done_title"], f"<p>{text}</p>", lang)


def bad_link() -> str:
    en, zh = TEXT["en"], TEXT["zh"]
    return _page(f'{en["bad_title"]} / {zh["bad_title"]}', f'<p>{en["bad"]}</p><p>{zh["bad"]}</p>', "en")


def survey(*, locale: str | None, score: int, top: int) -> str:
    lang = _lang(locale)
    t = TEXT[lang]
    form = (f'<p>{t["survey"].format(score=score, top=top)}</p><form method="post">'
            '<p><textarea name="comment" rows="4" maxlength="2000" style="width:100%"></textarea></p>'
            f'<button type="submit">{t["survey_button"]}</button></form>')
    return _page(t["survey_title"], form, lang)


def thanks(*, locale: str | None, score: int, top: int) -> str:
    lang = _lang(locale)
    t = TEXT[lang]
    return _page(t["thanks_title"], f'<p>{t["thanks"].format(score=score, top=top)}</p>', lang)
