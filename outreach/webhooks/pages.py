"""The few pages a customer sees, in English or Chinese by their locale.

Plain server-rendered HTML with its style inline: no script, no font or
image from anywhere, readable on a phone (the preference pages:
``preference_pages``)."""

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
        "manage": "Rather choose what you receive, or take a break?",
        "manage_link": "Your preferences",
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
        "manage": "想选择接收哪些内容，或暂停一段时间？",
        "manage_link": "订阅偏好设置",
    },
}
CHANNEL_NAMES = {"en": {"email": "email", "sms": "SMS"}, "zh": {"email": "邮件", "sms": "短信"}}


#: The ``lang`` attribute of each language's pages.
HTML_LANG = {"en": "en", "zh": "zh-CN"}
#: The pages' style: system fonts only (nothing fetched), touch targets of at
#: least 48 px, a visible focus ring, one column that fits a phone.
STYLE = (
    "*{box-sizing:border-box}"
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'PingFang SC','Hiragino Sans GB',"
    "'Microsoft YaHei','Noto Sans CJK SC',sans-serif;max-width:36rem;margin:2.5rem auto;padding:0 1rem;"
    "color:#2d3a2e;background:#fff;line-height:1.55;font-size:1rem}"
    "h1{font-size:1.6rem;line-height:1.25;margin:0 0 1rem}"
    "a{color:#1f5c39}"
    "button{background:#2f7d4f;color:#fff;border:2px solid #2f7d4f;border-radius:8px;padding:.7rem 1.4rem;"
    "font:inherit;font-weight:600;min-height:48px;cursor:pointer}"
    "button.secondary{background:#fff;color:#1f5c39}"
    "fieldset{border:1px solid #cdd8cf;border-radius:10px;margin:0 0 1.25rem;padding:.5rem 1rem 1rem}"
    "legend{font-weight:700;font-size:1.05rem;padding:0 .4rem}"
    ".option{display:flex;gap:.8rem;align-items:flex-start;min-height:48px;padding:.7rem .4rem;"
    "border-radius:8px;cursor:pointer}"
    ".option:hover{background:#f2f6f1}"
    ".option input{width:1.5rem;height:1.5rem;margin:.1rem 0 0;flex:none;accent-color:#2f7d4f}"
    ".option strong{display:block}"
    ".hint{display:block;color:#4f5d53;font-size:.93rem}"
    ".off{padding:.6rem .4rem}"
    ".status{background:#e6f2ea;border-left:5px solid #2f7d4f;padding:.8rem 1rem;border-radius:6px}"
    ".alert{background:#fcebea;border-left:5px solid #b42318;padding:.8rem 1rem;border-radius:6px}"
    ":focus-visible{outline:3px solid #1d4ed8;outline-offset:2px}"
    "@media (max-width:30rem){body{margin:1.25rem auto}button{width:100%}}"
)


def lang_of(locale: str | None) -> str:
    """``zh`` for a Chinese locale (zh_CN, zh-TW …), else ``en``."""
    return "zh" if (locale or "").lower().startswith("zh") else "en"



def page(title: str, body: str, lang: str) -> str:
    """A whole page: ``body`` (HTML) under the title."""
    return (
        f'<!doctype html><html lang="{HTML_LANG[lang]}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )



def _manage(t: dict[str, str], preferences_url: str | None) -> str:
    if not preferences_url:
        return ""
    return f'<p>{t["manage"]} <a href="{escape(preferences_url)}">{t["manage_link"]}</a></p>'



def confirm(*, locale: str | None, channel: str, address: str, preferences_url: str | None = None) -> str:
    lang = lang_of(locale)
    t = TEXT[lang]
    question = t["confirm"].format(channel=CHANNEL_NAMES[lang][channel], address=escape(address))
    form = (f'<p>{question}</p><form method="post"><input type="hidden" name="List-Unsubscribe" '
            f'value="One-Click"><button type="submit">{t["button"]}</button></form>')
    return page(t["confirm_title"], form + _manage(t, preferences_url), lang)


def done(*, locale: str | None, channel: str, address: str, preferences_url: str | None = None) -> str:
    lang = lang_of(locale)
    t = TEXT[lang]
    text = t["done"].format(channel=CHANNEL_NAMES[lang][channel], address=escape(address))
    return page(t["done_title"], f"<p>{text}</p>" + _manage(t, preferences_url), lang)


def bad_link() -> str:
    en, zh = TEXT["en"], TEXT["zh"]
    return page(f'{en["bad_title"]} / {zh["bad_title"]}', f'<p>{en["bad"]}</p><p>{zh["bad"]}</p>', "en")


def survey(*, locale: str | None, score: int, top: int) -> str:
    lang = lang_of(locale)
    t = TEXT[lang]
    form = (f'<p>{t["survey"].format(score=score, top=top)}</p><form method="post">'
            '<p><textarea name="comment" rows="4" maxlength="2000" style="width:100%"></textarea></p>'
            f'<button type="submit">{t["survey_button"]}</button></form>')
    return page(t["survey_title"], form, lang)


def thanks(*, locale: str | None, score: int, top: int) -> str:
    lang = lang_of(locale)
    t = TEXT[lang]
    return page(t["thanks_title"], f'<p>{t["thanks"].format(score=score, top=top)}</p>', lang)
