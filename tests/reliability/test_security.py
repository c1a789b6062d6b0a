"""Security (issue 5, item 7) against redis-server processes these tests start.

- AUTH with an ACL user (``redis://user:password@``): every operation and the
  invalidation bus work; a wrong password degrades (or raises in raise mode);
  the password never shows in reprs, log records or exception messages.
- TLS (``rediss://``) with a throwaway CA made by openssl: round trips and the
  bus work; a client that trusts another CA (or speaks plaintext) fails and
  the cache degrades.
- Signed pickle: a planted payload is refused unread (its ``__reduce__``
  never runs) and a signed value copied to another key or namespace is
  refused.

Every server binds 127.0.0.1 on a free port, with no persistence, and is
stopped by pid in a ``finally``; every wait is bounded.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

import tiercache as tc
from tiercache.serialization import signing_context

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

USER = "app"
PASSWORD = "s3cret-Qx7v9Lk2"
"""The ACL user's password: distinctive, so a substring search for it cannot miss."""
WRONG_PASSWORD = "wr0ng-Pw-K4x8Zt"
TIMEOUT = 0.5
"""RedisTier timeout in these tests: room for a TLS handshake on a loaded machine."""
BUS_WAIT = 5.0
"""Seconds a bus invalidation may take to reach the other cache."""
HMAC_KEY = b"0123456789abcdef-tiercache-test"

pytestmark = pytest.mark.redis


# -- redis-server processes -----------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(
    workdir: Path, extra: list[str], connect: Callable[[int], redis.Redis], *, tls: bool = False
) -> Iterator[int]:
    """redis-server on 127.0.0.1:<free port>, ready once ``connect(port)`` pings; stopped by pid."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    listen = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
    log_file = workdir / "redis.log"
    proc = subprocess.Popen(
        [
            REDIS_SERVER, *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning",
            "--logfile", str(log_file), *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10.0
        ready = False
        last: BaseException | None = None
        for _ in range(1000):  # bounded; the deadline ends it sooner
            client = connect(port)
            try:
                ready = bool(client.ping())
            except redis.RedisError as exc:
                last = exc
            finally:
                client.close()
            if ready or proc.poll() is not None or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        if not ready:
            text = log_file.read_text(errors="replace") if log_file.exists() else ""
            raise AssertionError(
                f"redis-server {' '.join(extra)} on port {port} did not start "
                f"(exit {proc.poll()}, last error {last!r}):\n{text[-2000:]}"
            )
        yield port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _acl_client(port: int, password: str = PASSWORD) -> redis.Redis:
    return redis.Redis(port=port, username=USER, password=password,
                       socket_timeout=2.0, socket_connect_timeout=2.0)


@pytest.fixture(scope="module")
def acl_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server whose default user is off; only ``app`` (password) may connect."""
    extra = ["--user", "default", "off",
             "--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all"]
    with redis_server(tmp_path_factory.mktemp("acl"), extra, _acl_client) as port:
        yield port


def _acl_url(port: int, password: str = PASSWORD) -> str:
    return f"redis://{USER}:{password}@127.0.0.1:{port}/0"


@pytest.fixture(scope="module")
def plain_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server with no auth, for the pickle tests."""
    with redis_server(tmp_path_factory.mktemp("plain"), [],
                      lambda p: redis.Redis(port=p, socket_timeout=2.0)) as port:
        yield port


# -- helpers ------------------------------------------------------------------------


def _l2(ns: Any) -> dict[str, Any]:
    """The namespace's stats of its Redis tier (the last one)."""
    tiers = ns.stats()["tiers"]
    return tiers[[name for name in tiers if name.endswith(":redis")][-1]]


def _in_l1(cache: tc.Cache, ns: Any, key: str) -> bool:
    l1 = cache.tiers[0]
    return l1.get_many([ns.tier_key(key)], time.monotonic())[0] is not None


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    for _ in range(100_000):  # bounded; the deadline ends it sooner
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return condition()


def _exception_texts(exc: BaseException) -> list[str]:
    """Message, repr and formatted traceback of an exception and of its whole chain."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return texts


def _record_texts(records: list[logging.LogRecord]) -> list[str]:
    texts = []
    for record in records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            texts += _exception_texts(record.exc_info[1])
        if record.exc_text:
            texts.append(record.exc_text)
    return texts


def _assert_no_secret(secret: str, texts: list[str], where: str) -> None:
    leaks = [t for t in texts if secret in t]
    assert not leaks, f"password leaked in {where}: {leaks[:3]}"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog at DEBUG for the 'tiercache' and 'redis' loggers."""
    caplog.set_level(logging.DEBUG, logger="tiercache")
    caplog.set_level(logging.DEBUG, logger="redis")
    return caplog


# -- 1. AUTH with an ACL user -----------------------------------------------------


def test_acl_user_set_get_delete_invalidate_all(
    acl_port: int, debug_logs: pytest.LogCaptureFixture
) -> None:
    """An ACL user's URL: set/get/delete/invalidate_all round-trip through L2; no password leaks."""
    admin = _acl_client(acl_port)
    writer = tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(_acl_url(acl_port), timeout=TIMEOUT)],
                      prefix="acl1")
    # No L1 and no store: every answer of the reader comes from Redis.
    reader = tc.Cache(tiers=[tc.RedisTier(_acl_url(acl_port), timeout=TIMEOUT)], prefix="acl1")
    try:
        ns_w, ns_r = writer.namespace("users"), reader.namespace("users")
        ns_w.set("k1", {"name": "ada"})
        ns_w.set("k2", [1, 2, 3])
        assert admin.exists(ns_w.tier_key("k1")) == 1, "the value did not reach Redis"
        assert ns_r.get("k1") == {"name": "ada"}
        assert ns_r.get("k2") == [1, 2, 3]
        assert _l2(ns_r)["hits"] == 2

        ns_w.delete("k1")
        assert admin.exists(ns_w.tier_key("k1")) == 0
        assert ns_r.get("k1") is None

        ns_w.invalidate_all()
        assert ns_r.get("k2") is None
        assert list(admin.scan_iter(match="acl1:users:*", count=1000)) == []

        for ns in (ns_w, ns_r):
            assert _l2(ns)["errors"] == 0, ns.stats()

        texts = [repr(t) for c in (writer, reader) for t in c.tiers]
        texts += [repr(writer), repr(reader), repr(ns_w), repr(ns_r), str(writer.stats())]
        _assert_no_secret(PASSWORD, texts, "reprs")
        _assert_no_secret(PASSWORD, _record_texts(debug_logs.records), "log records")
    finally:
        writer.close()
        reader.close()
        admin.close()


def test_acl_user_write_through_fill_reaches_l2(acl_port: int) -> None:
    """With a store, a read fills L2 as the ACL user; a cache with an empty store then hits L2."""
    admin = _acl_client(acl_port)
    store = tc.MappingStore({"k": "from-store"})
    # No L1: the write-through write leaves no copy to hit, so the read loads and fills L2.
    filler = tc.Cache(tiers=[tc.RedisTier(_acl_url(acl_port), timeout=TIMEOUT)],
                      store=store, prefix="acl2")
    other = tc.Cache(tiers=[tc.RedisTier(_acl_url(acl_port), timeout=TIMEOUT)],
                     store=tc.MappingStore({}), prefix="acl2")
    try:
        ns = filler.namespace("items")
        ns.set("k", "written")  # WriteThrough: store, then the L2 copy is dropped
        assert store.mapping["k"] == "written"
        assert ns.get("k") == "written"  # loads the store and fills L2 (fenced fill)
        assert admin.exists(ns.tier_key("k")) == 1, "the fill did not reach Redis"
        ns_o = other.namespace("items")
        assert ns_o.get("k") == "written", "the other cache's empty store answered, not L2"
        assert _l2(ns_o)["hits"] == 1
        assert _l2(ns)["errors"] == 0 and _l2(ns_o)["errors"] == 0
    finally:
        filler.close()
        other.close()
        admin.close()


def _bus_drops_other_l1(url: str, prefix: str) -> None:
    store = tc.MappingStore({"k": 1})
    a = tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(url, timeout=TIMEOUT)],
                 store=store, prefix=prefix)
    b = tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(url, timeout=TIMEOUT)],
                 store=store, prefix=prefix)
    try:
        ns_a = a.namespace("bus", invalidation=tc.Purge())
        ns_b = b.namespace("bus", invalidation=tc.Purge())
        assert ns_a.get("k") == 1 and ns_b.get("k") == 1
        assert _in_l1(b, ns_b, "k"), "b did not keep an L1 copy"
        ns_a.set("k", 2)
        assert _wait(lambda: not _in_l1(b, ns_b, "k"), BUS_WAIT), (
            f"b's L1 copy survived a Purge write in a for {BUS_WAIT}s (bus of b: "
            f"received={b._bus.received}, gaps={b._bus.gaps}, healthy={b._bus.healthy})"
        )
        assert ns_b.get("k") == 2
        # Dropped by the message, not by a gap (a broken bus drops all L1 copies).
        assert b._bus.received >= 1 and b._bus.gaps == 0, (b._bus.received, b._bus.gaps)
        assert ns_a.stats()["bus_errors"] == 0 and ns_b.stats()["bus_errors"] == 0
    finally:
        a.close()
        b.close()


def test_acl_user_bus_invalidation(acl_port: int, debug_logs: pytest.LogCaptureFixture) -> None:
    """The bus works as the ACL user: a Purge write in one cache drops the other's L1 copy."""
    _bus_drops_other_l1(_acl_url(acl_port), "acl3")
    _assert_no_secret(PASSWORD, _record_texts(debug_logs.records), "log records")


def test_acl_wrong_password_degrades_without_leaking(
    acl_port: int, debug_logs: pytest.LogCaptureFixture
) -> None:
    """A wrong password: degrade serves the store and counts errors; the password is never shown."""
    url = _acl_url(acl_port, WRONG_PASSWORD)
    store = tc.MappingStore({f"k{i}": i for i in range(10)})
    tier = tc.RedisTier(url, timeout=TIMEOUT)
    cache = tc.Cache(tiers=[tc.MemoryTier(), tier], store=store, prefix="acl4")
    try:
        ns = cache.namespace("items")
        for i in range(5):  # enough failures to open the breaker (and log its warning)
            assert ns.get(f"k{i}") == i
        ns.set("k9", 99)
        assert store.mapping["k9"] == 99
        assert _l2(ns)["errors"] >= 1, ns.stats()
        assert not tier.available, "repeated auth failures did not open the breaker"
        # The bus listener logs its failure too: wait for it, so its text is checked.
        assert _wait(lambda: any(r.name == "tiercache.bus" for r in debug_logs.records), 3.0)
        assert any(r.name == "tiercache.redis" for r in debug_logs.records)
        texts = [repr(tier), repr(cache), repr(ns), str(cache.stats())]
        _assert_no_secret(WRONG_PASSWORD, texts, "reprs")
        _assert_no_secret(WRONG_PASSWORD, _record_texts(debug_logs.records), "log records")
    finally:
        cache.close()


def test_acl_wrong_password_raise_mode(acl_port: int, debug_logs: pytest.LogCaptureFixture) -> None:
    """Wrong password, on_tier_error='raise': TierUnavailable, with no password in its messages."""
    url = _acl_url(acl_port, WRONG_PASSWORD)
    cache = tc.Cache(tiers=[tc.RedisTier(url, timeout=TIMEOUT)],
                     store=tc.MappingStore({"k": 1}), prefix="acl5", on_tier_error="raise")
    try:
        ns = cache.namespace("items", invalidation=tc.TTL(60))
        with pytest.raises(tc.TierError) as info:
            ns.get("k")
        assert isinstance(info.value, tc.TierUnavailable), repr(info.value)
        cause = info.value.__cause__
        assert isinstance(cause, redis.AuthenticationError), repr(cause)
        _assert_no_secret(WRONG_PASSWORD, _exception_texts(info.value), "the exception")
        with pytest.raises(tc.TierError) as info_set:
            ns.set("k", 2)
        _assert_no_secret(WRONG_PASSWORD, _exception_texts(info_set.value), "the exception")
        _assert_no_secret(WRONG_PASSWORD, _record_texts(debug_logs.records), "log records")
    finally:
        cache.close()


def test_password_never_in_url_reprs_or_config_errors() -> None:
    """Reprs and ConfigurationErrors of URLs with a password (userinfo or query) hide it."""
    ok = [
        f"redis://{USER}:{PASSWORD}@127.0.0.1:1/0",
        f"redis://:{PASSWORD}@127.0.0.1:1/0",
        f"rediss://{USER}:{PASSWORD}@127.0.0.1:1/0?ssl_cert_reqs=required",
        f"redis://127.0.0.1:1/0?password={PASSWORD}&db=0",
        f"redis://{USER}:{PASSWORD}@127.0.0.1:1/0?ssl_ca_certs=/tmp/a@b/ca.pem",
    ]
    for url in ok:
        tier = tc.RedisTier(url)
        try:
            _assert_no_secret(PASSWORD, [repr(tier), repr(tc.Cache(tiers=[tier], bus=False))], url)
        finally:
            tier.close()
    bad = [
        f"redis://{USER}:{PASSWORD}@127.0.0.1:1/0?db=notanint",
        f"redis://{USER}:{PASSWORD}@127.0.0.1:notaport/0",
        f"http://{USER}:{PASSWORD}@127.0.0.1:1/0",
        f"redis://{USER}:{PASSWORD}@[::1/0",
    ]
    for url in bad:
        with pytest.raises(tc.ConfigurationError) as info:
            tc.RedisTier(url)
        _assert_no_secret(PASSWORD, _exception_texts(info.value), url)
    client = redis.Redis(port=1, username=USER, password=PASSWORD)
    try:
        _assert_no_secret(PASSWORD, [repr(tc.RedisTier(client=client))], "a client's repr")
    finally:
        client.close()


# -- 2. TLS -------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _make_ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=tiercache test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server cert for 127.0.0.1 signed by it, and an unrelated CA; made with openssl."""
    d = tmp_path_factory.mktemp("tls")
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "ext.cnf").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return {"ca": d / "ca.pem", "other_ca": d / "other-ca.pem",
            "cert": d / "server.pem", "key": d / "server.key", "dir": d}


def _tls_url(port: int, ca: Path) -> str:
    return f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"


@pytest.fixture(scope="module")
def tls_port(tls_files: dict[str, Path]) -> Iterator[int]:
    """A redis-server speaking only TLS (``--port 0``); fails, never skips, on a non-TLS build."""
    extra = ["--tls-cert-file", str(tls_files["cert"]), "--tls-key-file", str(tls_files["key"]),
             "--tls-ca-cert-file", str(tls_files["ca"]), "--tls-auth-clients", "no"]

    def connect(port: int) -> redis.Redis:
        return redis.Redis.from_url(_tls_url(port, tls_files["ca"]),
                                    socket_timeout=2.0, socket_connect_timeout=2.0)

    with redis_server(tls_files["dir"] / "server", extra, connect, tls=True) as port:
        yield port


def test_tls_round_trip(tls_port: int, tls_files: dict[str, Path]) -> None:
    """rediss:// with a verified CA: set/get/delete round-trip through L2 over TLS."""
    url = _tls_url(tls_port, tls_files["ca"])
    admin = redis.Redis.from_url(url, socket_timeout=2.0)
    writer = tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(url, timeout=TIMEOUT)], prefix="tls1")
    reader = tc.Cache(tiers=[tc.RedisTier(url, timeout=TIMEOUT)], prefix="tls1")
    store = tc.MappingStore({"s": "stored"})
    filler = tc.Cache(tiers=[tc.RedisTier(url, timeout=TIMEOUT)], store=store, prefix="tls1")
    try:
        ns_w, ns_r = writer.namespace("t"), reader.namespace("t")
        ns_w.set("k", {"over": "tls"})
        assert admin.exists(ns_w.tier_key("k")) == 1
        assert ns_r.get("k") == {"over": "tls"}
        assert _l2(ns_r)["hits"] == 1
        ns_w.delete("k")
        assert ns_r.get("k") is None
        ns_f = filler.namespace("f")
        assert ns_f.get("s") == "stored"
        assert admin.exists(ns_f.tier_key("s")) == 1, "the store fill did not reach Redis"
        for ns in (ns_w, ns_r, ns_f):
            assert _l2(ns)["errors"] == 0, ns.stats()
        assert admin.connection_pool.connection_class is redis.SSLConnection
    finally:
        writer.close()
        reader.close()
        filler.close()
        admin.close()


def test_tls_bus_invalidation(tls_port: int, tls_files: dict[str, Path]) -> None:
    """The bus works over rediss://: a Purge write in one cache drops the other's L1 copy."""
    _bus_drops_other_l1(_tls_url(tls_port, tls_files["ca"]), "tls2")


def test_tls_wrong_ca_or_plaintext_degrades(tls_port: int, tls_files: dict[str, Path]) -> None:
    """A client trusting another CA, or plaintext, fails: degrade serves, raise mode raises."""
    for url in (_tls_url(tls_port, tls_files["other_ca"]), f"redis://127.0.0.1:{tls_port}/0"):
        store = tc.MappingStore({"k": "from-store"})
        cache = tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(url, timeout=TIMEOUT)],
                         store=store, prefix="tls3", bus=False)
        strict = tc.Cache(tiers=[tc.RedisTier(url, timeout=TIMEOUT)], store=store,
                          prefix="tls3", bus=False, on_tier_error="raise")
        try:
            ns = cache.namespace("t")
            started = time.monotonic()
            assert ns.get("k") == "from-store", url
            elapsed = time.monotonic() - started
            assert elapsed < 4 * TIMEOUT + 1.0, f"a failed handshake took {elapsed:.2f}s"
            ns.set("k", "new")
            assert store.mapping["k"] == "new"
            assert _l2(ns)["errors"] >= 1, (url, ns.stats())
            with pytest.raises(tc.TierUnavailable):
                strict.namespace("t").get("k")
        finally:
            cache.close()
            strict.close()


# -- 3. signed pickle --------------------------------------------------------------------


class _Planted:
    """Unpickling this creates (opens for writing) the marker file: proof the payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def _envelope(data: bytes) -> bytes:
    """RedisTier's envelope: version byte, expiry 0 (none), then the serializer's bytes."""
    return b"T" + struct.pack(">Q", 0) + data


def test_pickle_is_opt_in_and_needs_a_key() -> None:
    """pickle is never the default; PickleSerializer refuses to exist without a 16-byte HMAC key."""
    with pytest.raises(tc.ConfigurationError):
        tc.PickleSerializer()
    with pytest.raises(tc.ConfigurationError):
        tc.PickleSerializer(hmac_key=b"short")
    cache = tc.Cache(tiers=[tc.MemoryTier()], bus=False)
    try:
        assert not isinstance(cache.namespace("d").serializer, tc.PickleSerializer)
    finally:
        cache.close()


def test_planted_pickle_never_executes(plain_port: int, tmp_path: Path) -> None:
    """Planted pickle payloads: default returned, undecodable counted, the payload never runs."""
    marker = tmp_path / "pwned"
    control = tmp_path / "control"
    payload = pickle.dumps(_Planted(control))
    # The payload is live: loading it (our own, on purpose) creates its file.
    pickle.loads(payload).close()  # noqa: S301 - our own payload, loaded to prove it runs
    assert control.exists()
    payload = pickle.dumps(_Planted(marker))

    forged = tc.PickleSerializer(hmac_key=b"another-key-of-the-attacker-0000")
    plants = {
        "zero-signature": _envelope(b"\x03" + b"\x00" * 32 + payload),
        "no-signature": _envelope(b"\x03" + payload),
        # Well formed and signed for this very namespace and key, but not with our key.
        "other-key": _envelope(
            forged.dumps_for(_Planted(marker), signing_context("pk1", "sec", "s:other-key"))
        ),
        "bare-pickle": payload,
        "bare-format-byte": b"\x03" + b"\x00" * 32 + payload,
    }
    admin = redis.Redis(port=plain_port, socket_timeout=2.0)
    url = f"redis://127.0.0.1:{plain_port}/0"
    cache = tc.Cache(tiers=[tc.MemoryTier(), tc.RedisTier(url, timeout=TIMEOUT)], prefix="pk1")
    try:
        ns = cache.namespace("sec", serializer=tc.PickleSerializer(hmac_key=HMAC_KEY))
        for name, raw in plants.items():
            admin.set(ns.tier_key(name), raw)
        # Control: the same construction with our key is accepted, so what the
        # "other-key" plant lacks is only the right key.
        genuine = tc.PickleSerializer(hmac_key=HMAC_KEY).dumps_for(
            {"ok": 1}, signing_context("pk1", "sec", "s:genuine")
        )
        admin.set(ns.tier_key("genuine"), _envelope(genuine))
        assert ns.get("genuine") == {"ok": 1}
        for n, name in enumerate(plants, 1):
            assert ns.get(name, "DEFAULT") == "DEFAULT", name
            assert _l2(ns)["undecodable"] == n, (name, ns.stats())
            assert not marker.exists(), f"the planted payload {name!r} was unpickled"
        assert ns.get_many(list(plants)) in ({}, dict.fromkeys(plants))
        assert not marker.exists()
    finally:
        cache.close()
        admin.close()


def test_signed_pickle_is_bound_to_namespace_and_key(plain_port: int) -> None:
    """A correctly signed value copied to another key, or another namespace, is refused."""
    admin = redis.Redis(port=plain_port, socket_timeout=2.0)
    url = f"redis://127.0.0.1:{plain_port}/0"
    serializer = tc.PickleSerializer(hmac_key=HMAC_KEY)
    writer = tc.Cache(tiers=[tc.RedisTier(url, timeout=TIMEOUT)], prefix="pk2")
    reader = tc.Cache(tiers=[tc.RedisTier(url, timeout=TIMEOUT)], prefix="pk2")
    try:
        ns_w = writer.namespace("sec", serializer=serializer)
        ns_r = reader.namespace("sec", serializer=tc.PickleSerializer(hmac_key=HMAC_KEY))
        other = reader.namespace("other", serializer=tc.PickleSerializer(hmac_key=HMAC_KEY))
        ns_w.set("A", {"role": "user", "id": 1})
        raw = admin.get(ns_w.tier_key("A"))
        assert raw is not None
        assert ns_r.get("A") == {"role": "user", "id": 1}, "the genuine value is not readable"
        admin.set(ns_r.tier_key("B"), raw)
        admin.set(other.tier_key("A"), raw)
        assert ns_r.get("B", "DEFAULT") == "DEFAULT"
        assert _l2(ns_r)["undecodable"] == 1, ns_r.stats()
        assert other.get("A", "DEFAULT") == "DEFAULT"
        assert _l2(other)["undecodable"] == 1, other.stats()
        assert ns_r.get("A") == {"role": "user", "id": 1}
    finally:
        writer.close()
        reader.close()
        admin.close()
