"""A small app whose cache is exposed to Prometheus: it serves a workload, then prints the
exposition."""

from __future__ import annotations

import argparse
import sys

from prometheus_client import CollectorRegistry, generate_latest

import tiercache as tc
from tiercache.contrib.prometheus import register

PRODUCTS = {i: {"id": i, "price": 10 * i} for i in range(100)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", metavar="URL",
                        help="Redis for L2 (default: the embedded in-process server)")
    parser.add_argument("--prefix", default="prometheus-example",
                        help="key prefix in Redis (default: %(default)s)")
    args = parser.parse_args(argv)

    redis = tc.RedisTier(args.redis) if args.redis else tc.RedisTier.embedded()
    # A registry of our own keeps the output to tiercache's metrics; an app
    # serving /metrics would pass none (the default REGISTRY) and call
    # prometheus_client.start_http_server(8000) once at start-up.
    registry = CollectorRegistry()
    with tc.Cache(
        tiers=[tc.MemoryTier(maxsize=1_000, ttl=30), redis],
        store=tc.MappingStore(PRODUCTS),
        prefix=args.prefix,
    ) as cache:
        register(cache, registry)
        catalog = cache.namespace("products")
        for product_id in range(10):  # 10 misses everywhere: 10 store loads
            catalog.get(product_id)
        for _ in range(5):  # then 50 L1 hits
            for product_id in range(10):
                catalog.get(product_id)
        # What a Prometheus server would read from /metrics at this moment.
        sys.stdout.write(generate_latest(registry).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
