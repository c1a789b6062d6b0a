"""A Starlette app behind tiercache's ASGI response cache: python examples/asgi_starlette.py."""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import tiercache as tc
from tiercache.contrib.asgi import CacheMiddleware


async def now(request: Request) -> Response:
    """Changes every call: shows what the cache absorbs (cached 5 s, as max-age says)."""
    return PlainTextResponse(f"{time.time():.6f}", headers={"Cache-Control": "public, max-age=5"})


async def user(request: Request) -> Response:
    """Tagged: the Surrogate-Key header lets a CDN (and tiercache) purge by user."""
    uid = request.path_params["uid"]
    return JSONResponse(
        {"id": uid, "at": time.time()}, headers={"X-Cache-Tags": f"user:{uid} users"}
    )


async def me(request: Request) -> Response:
    """Per user: marked private, so the shared cache never stores it."""
    return PlainTextResponse(f"you, at {time.time():.6f}", headers={"Cache-Control": "private"})


def create_app(redis_url: str | None = None, prefix: str = "example") -> Starlette:
    """The app, with an L1 + Redis AsyncCache (embedded Redis without a URL)."""
    redis = tc.RedisTier(redis_url) if redis_url else tc.RedisTier.embedded()
    cache = tc.AsyncCache(tiers=[tc.MemoryTier(maxsize=10_000), redis], prefix=prefix)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await cache.close()

    return Starlette(
        routes=[Route("/now", now), Route("/users/{uid}", user), Route("/me", me)],
        middleware=[Middleware(CacheMiddleware, cache=cache, ttl=30)],
        lifespan=lifespan,
    )


def main() -> None:
    """Serve the app with uvicorn."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--redis", default=None, help="Redis URL (default: embedded)")
    parser.add_argument("--prefix", default="example")
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.redis, args.prefix), host=args.host, port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
