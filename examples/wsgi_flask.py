"""A Flask app behind tiercache's WSGI response cache: python examples/wsgi_flask.py --port 8000."""

from __future__ import annotations

import argparse
import time

from flask import Flask, jsonify

import tiercache as tc
from tiercache.contrib.wsgi import CacheMiddleware


def create_app(redis_url: str | None = None, prefix: str = "example") -> Flask:
    """The app, its WSGI callable wrapped by the cache (embedded Redis without a URL)."""
    app = Flask(__name__)
    redis = tc.RedisTier(redis_url) if redis_url else tc.RedisTier.embedded()
    cache = tc.Cache(tiers=[tc.MemoryTier(maxsize=10_000), redis], prefix=prefix)

    @app.get("/now")
    def now() -> tuple[str, int, dict[str, str]]:
        """Changes every call: shows what the cache absorbs (cached 5 s, as max-age says)."""
        return f"{time.time():.6f}", 200, {"Cache-Control": "public, max-age=5"}

    @app.get("/users/<uid>")
    def user(uid: str) -> tuple[object, int, dict[str, str]]:
        """Tagged: the Surrogate-Key header lets a CDN (and tiercache) purge by user."""
        return jsonify(id=uid, at=time.time()), 200, {"X-Cache-Tags": f"user:{uid} users"}

    @app.get("/me")
    def me() -> tuple[str, int, dict[str, str]]:
        """Per user: marked private, so the shared cache never stores it."""
        return f"you, at {time.time():.6f}", 200, {"Cache-Control": "private"}

    app.wsgi_app = CacheMiddleware(app.wsgi_app, cache, ttl=30)  # type: ignore[method-assign]
    return app


def main() -> None:
    """Serve the app with Flask's threaded development server."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--redis", default=None, help="Redis URL (default: embedded)")
    parser.add_argument("--prefix", default="example")
    args = parser.parse_args()
    create_app(args.redis, args.prefix).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
