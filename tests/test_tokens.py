"""Signed link tokens: they round-trip, and cannot be forged or repurposed."""

from __future__ import annotations

import pytest

from outreach.config import load_settings
from outreach.sending import tokens

SETTINGS = load_settings(secret_key="s3cret", public_url="https://t.example/")


def test_tokens_round_trip_and_urls_use_the_public_url() -> None:
    unsub = tokens.unsubscribe_url(SETTINGS, 42)
    click = tokens.click_url(SETTINGS, 42, "https://shop.example/p?x=1&y=2")
    pixel = tokens.open_pixel_url(SETTINGS, 42)
    assert unsub.startswith("https://t.example/u/") and pixel.endswith(".gif")
    assert tokens.read_unsubscribe_token(SETTINGS, unsub.rsplit("/", 1)[1]) == 42
    assert tokens.read_click_token(SETTINGS, click.rsplit("/", 1)[1]) == (42, "https://shop.example/p?x=1&y=2")
    assert tokens.read_open_token(SETTINGS, pixel.rsplit("/", 1)[1]) == 42


def test_a_token_for_one_purpose_is_refused_for_another() -> None:
    unsub = tokens.unsubscribe_url(SETTINGS, 42).rsplit("/", 1)[1]
    with pytest.raises(tokens.BadToken):
        tokens.read_open_token(SETTINGS, unsub)
    with pytest.raises(tokens.BadToken):
        tokens.read_click_token(SETTINGS, unsub)


def test_another_secret_or_an_edit_is_refused() -> None:
    other = load_settings(secret_key="other", public_url="https://t.example")
    token = tokens.unsubscribe_url(other, 42).rsplit("/", 1)[1]
    with pytest.raises(tokens.BadToken):
        tokens.read_unsubscribe_token(SETTINGS, token)
    good = tokens.unsubscribe_url(SETTINGS, 42).rsplit("/", 1)[1]
    with pytest.raises(tokens.BadToken):
        tokens.read_unsubscribe_token(SETTINGS, good.replace(good[3], "Z" if good[3] != "Z" else "Y"))


@pytest.mark.parametrize("payload", [7, 123456789, [42, "https://shop.example/tea?utm=a&b=1"],
                                     [1, "https://商店.example/茶叶"], [9, "x" * 2000]])
def test_tokens_are_exactly_what_itsdangerous_writes(payload: object) -> None:
    # Tokens already in customers' inboxes must stay readable: ours are itsdangerous's own
    from itsdangerous import URLSafeSerializer

    from outreach.sending.tokens import CLICK_SALT, _dumps

    reference = URLSafeSerializer("s3cret", salt=CLICK_SALT)
    ours = _dumps(SETTINGS, CLICK_SALT, payload)
    assert reference.loads(ours) == payload
    if not reference.dumps(payload).startswith("."):  # itsdangerous compressed it: a different form
        assert ours == reference.dumps(payload)
