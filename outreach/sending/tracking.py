"""Tracked links: every web link of a message becomes a signed click
redirect (``/c/…``, which only ever redirects to the link that was in the
message), except its own unsubscribe and preference links (``untracked``:
not clicks on the offer); an email body gets an open pixel."""

from __future__ import annotations

import re
from collections.abc import Callable

from outreach.config import Settings
from outreach.sending import tokens

_HREF = re.compile(r'href="(https?://[^"]+)"')
#: An href's value that is a web link (what the body's hrefs are checked against).
TRACKABLE = re.compile(r'https?://[^"]+')
_TEXT_URL = re.compile(r"https?://[^\s<>\"')]+")


class Tracker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def link(self, message_id: int, untracked: tuple[str, ...]) -> Callable[[str], str]:
        """What an href value of the body (HTML-escaped) becomes: a tracked
        click, unless it is one of ``untracked`` or not a web link."""
        def link(value: str) -> str:
            url = value.replace("&amp;", "&")
            if url in untracked or not TRACKABLE.fullmatch(value):
                return value
            return tokens.click_url(self.settings, message_id, url)

        return link

    def pixel(self, message_id: int) -> str:
        return (f'<img src="{tokens.open_pixel_url(self.settings, message_id)}" width="1" '
                'height="1" alt="" style="display:block;height:1px;width:1px;border:0" />')

    def html(self, html: str, message_id: int, untracked: tuple[str, ...]) -> str:
        """``html`` with its links tracked and the pixel before ``</body>``."""
        link = self.link(message_id, untracked)
        html = _HREF.sub(lambda match: f'href="{link(match.group(1))}"', html)
        pixel = self.pixel(message_id)
        if "</body>" in html:
            return html.replace("</body>", pixel + "</body>", 1)
        return html + pixel

    def text(self, text: str, message_id: int, untracked: tuple[str, ...]) -> str:
        """A plain-text body with its web links tracked."""
        def swap(match: re.Match[str]) -> str:
            url = match.group(0)
            if url in untracked:
                return url
            return tokens.click_url(self.settings, message_id, url)

        return _TEXT_URL.sub(swap, text)
