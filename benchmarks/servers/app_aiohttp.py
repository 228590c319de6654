"""Candidate: aiohttp web server (uvloop) with the bare ingest handler.

Run: python app_aiohttp.py HOST PORT
"""

import sys

import uvloop
from aiohttp import web

import handler


async def batch(request):
    body = await request.read()
    status, payload = handler.handle(request.method, request.path, request.headers.get("Authorization"), body)
    return web.Response(status=status, body=payload, content_type="application/json")


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/v1/batch", batch)
    web.run_app(
        app,
        host=sys.argv[1],
        port=int(sys.argv[2]),
        access_log=None,
        print=None,
        shutdown_timeout=1,
        loop=uvloop.new_event_loop(),
    )
