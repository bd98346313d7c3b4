"""The webhook server: unsubscribe, open pixel, click redirect, orders, Twilio."""
