"""Unit tests of the shared console<->agent protocol (pure, no root)."""

import pytest

from rampart_agent import protocol as p


@pytest.fixture(scope="module")
def key():
    return p.generate_private_key()


def test_request_round_trip(key):
    body = b'{"version": 3}'
    headers = p.sign_request(key, "POST", "/v1/apply", body, timestamp=1000, nonce="a" * 32)
    ts, nonce = p.verify_request(key.public_key(), "POST", "/v1/apply", body, headers, now=1030)
    assert (ts, nonce) == (1000, "a" * 32)


@pytest.mark.parametrize(
    "change",
    [
        {"method": "GET"},
        {"path": "/v1/confirm"},
        {"body": b'{"version": 4}'},
    ],
)
def test_tampered_request_is_refused(key, change):
    body = b'{"version": 3}'
    headers = p.sign_request(key, "POST", "/v1/apply", body, timestamp=1000)
    args = {"method": "POST", "path": "/v1/apply", "body": body, **change}
    with pytest.raises(p.SignatureError):
        p.verify_request(
            key.public_key(), args["method"], args["path"], args["body"], headers, now=1000
        )


def test_tampered_timestamp_and_other_key_refused(key):
    headers = p.sign_request(key, "GET", "/v1/status", timestamp=1000)
    bad = dict(headers, **{p.HEADER_TIMESTAMP: "1001"})
    with pytest.raises(p.SignatureError):
        p.verify_request(key.public_key(), "GET", "/v1/status", b"", bad, now=1000)
    other = p.generate_private_key()
    with pytest.raises(p.SignatureError):
        p.verify_request(other.public_key(), "GET", "/v1/status", b"", headers, now=1000)


def test_missing_headers_refused(key):
    headers = p.sign_request(key, "GET", "/v1/status")
    for name in (p.HEADER_TIMESTAMP, p.HEADER_NONCE, p.HEADER_SIGNATURE):
        partial = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(p.SignatureError):
            p.verify_request(key.public_key(), "GET", "/v1/status", b"", partial)


def test_headers_are_case_insensitive(key):
    headers = {k.lower(): v for k, v in p.sign_request(key, "GET", "/v1/status").items()}
    p.verify_request(key.public_key(), "GET", "/v1/status", b"", headers)


@pytest.mark.parametrize("skew", [-61, 61, 3600])
def test_expired_timestamp_refused(key, skew):
    headers = p.sign_request(key, "GET", "/v1/status", timestamp=1000)
    with pytest.raises(p.ExpiredError):
        p.verify_request(key.public_key(), "GET", "/v1/status", b"", headers, now=1000 + skew)


def test_nonce_cache_refuses_reuse_and_forgets_after_window():
    cache = p.NonceCache(window=60)
    cache.check_and_add("a" * 32, 1000, now=1000)
    with pytest.raises(p.ReplayError):
        cache.check_and_add("a" * 32, 1000, now=1050)
    cache.check_and_add("b" * 32, 1200, now=1200)  # 'a' is long expired -> evicted
    assert len(cache._seen) == 1


def test_response_signature(key):
    sig = p.sign_response(key, 200, b"{}", "c" * 32)
    p.verify_response(key.public_key(), 200, b"{}", "c" * 32, sig)
    for status, body, nonce, s in [
        (409, b"{}", "c" * 32, sig),
        (200, b"{ }", "c" * 32, sig),
        (200, b"{}", "d" * 32, sig),
        (200, b"{}", "c" * 32, None),
    ]:
        with pytest.raises(p.SignatureError):
            p.verify_response(key.public_key(), status, body, nonce, s)


def test_keys_and_cert_round_trip(key):
    assert p.load_private_key_pem(p.private_key_to_pem(key)).public_key() == key.public_key()
    pub = p.load_public_key_b64(p.public_key_b64(key))
    assert p.public_key_b64(pub) == p.public_key_b64(key)
    with pytest.raises(ValueError):
        p.load_public_key_b64("not base64!")
    pem = p.make_self_signed_cert(key, "web-1")
    fp = p.cert_fingerprint(pem)
    assert len(fp) == 64
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert p.cert_fingerprint(der) == fp


def test_bundle_hash_ignores_hash_field_and_key_order():
    a = {"format": 1, "device": "d", "iptables_v4": "x", "hash": "zzz"}
    b = {"iptables_v4": "x", "device": "d", "format": 1}
    assert p.bundle_hash(a) == p.bundle_hash(b)
    assert p.bundle_hash(a) != p.bundle_hash(dict(b, device="e"))
