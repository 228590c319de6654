"""Candidate: raw ASGI callable (no framework) with the bare ingest handler.

Served by both granian (--interface asgi) and uvicorn (--http httptools
--loop uvloop), so those two numbers compare servers, not apps.
"""

import handler


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return

    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)

    auth = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            auth = value.decode("latin-1")
            break

    status, payload = handler.handle(scope["method"], scope["path"], auth, body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
