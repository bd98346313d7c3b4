"""The webhook server: what customers, mail clients, the shop and Twilio send us.

    app.py     the Starlette app: the routes of every source, /healthz, ``serve``
    links.py   unsubscribe, open pixel, click redirect (signed tokens)
    orders.py  the shop's order webhook (HMAC-signed JSON)
    twilio.py  incoming SMS (STOP) and delivery status callbacks (Twilio signatures)
    pages.py   the pages a customer sees, in their language
    server.py  run the app in a background thread (demo and tests)
"""
