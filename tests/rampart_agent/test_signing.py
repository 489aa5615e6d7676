"""The signing contract's bytes are the wire format: pinned here, byte for byte."""

import base64

import pytest

from rampart_agent import protocol
from rampart_contract import signing

EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
BRACES_SHA = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def test_request_message_bytes():
    got = signing.request_message("post", "/v1/apply?x=1", b"{}", 1000, "a" * 32)
    assert got == f"rampart-v1\nPOST\n/v1/apply?x=1\n{BRACES_SHA}\n1000\n{'a' * 32}".encode()


def test_response_message_bytes():
    got = signing.response_message(200, b"", "b" * 32)
    assert got == f"rampart-v1-response\n200\n{EMPTY_SHA}\n{'b' * 32}".encode()


def test_signed_headers_carry_the_contract_names_and_verify_over_its_bytes():
    key = protocol.generate_private_key()
    headers = protocol.sign_request(key, "GET", "/v1/status", timestamp=1000, nonce="c" * 32)
    assert headers[signing.HEADER_TIMESTAMP] == "1000"
    assert headers[signing.HEADER_NONCE] == "c" * 32
    assert set(headers) == {"X-Rampart-Timestamp", "X-Rampart-Nonce", "X-Rampart-Signature"}
    message = signing.request_message("GET", "/v1/status", b"", 1000, "c" * 32)
    sig = base64.b64decode(headers[signing.HEADER_SIGNATURE])
    key.public_key().verify(sig, message)  # raises InvalidSignature if the bytes differ


@pytest.mark.parametrize(
    "nonce, valid",
    [("0" * 32, True), ("A" * 32, False), ("0" * 31, False), ("g" * 32, False)],
)
def test_nonce_format(nonce, valid):
    assert signing.is_valid_nonce(nonce) is valid
    assert signing.is_valid_nonce(signing.new_nonce())


def test_freshness_window_is_inclusive():
    assert signing.CLOCK_WINDOW == 60
    assert signing.is_fresh(1000, 1060) and signing.is_fresh(1000, 940)
    assert not signing.is_fresh(1000, 1060.5) and not signing.is_fresh(1000, 939)


def test_header_lookup_ignores_case():
    assert signing.header({"x-rampart-nonce": "n"}, signing.HEADER_NONCE) == "n"
    assert signing.header({}, signing.HEADER_NONCE) is None
