"""HTTPS API in-process (recording dataplane, loopback): signatures, replay, downgrade."""

import json
import ssl
import threading
import time

import pytest
import requests
import urllib3  # noqa: F401 - named in the warning filter

from rampart_agent import protocol
from rampart_agent.dataplane import RecordingDataplane
from rampart_agent.engine import Engine
from rampart_agent.sample import make_bundle
from rampart_agent.server import make_server
from rampart_agent.state import StateDir

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


def bundle(action="ACCEPT"):
    spec = {
        "filter": {"chains": {"RPT-INPUT": [f"-j {action}"]}, "jumps": {"INPUT": ["RPT-INPUT"]}}
    }
    return make_bundle(v4=spec)


@pytest.fixture
def agent(tmp_path):
    state = StateDir(tmp_path)
    state.ensure_identity()
    console = protocol.generate_private_key()
    state.set_console_key(protocol.public_key_b64(console))
    dp = RecordingDataplane()
    engine = Engine(state, dp)
    engine.start()
    server = make_server(engine, state, "127.0.0.1:0")
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    port = server.server_address[1]
    agent_pub = state.ensure_identity().public_key()

    def call(
        method,
        path,
        body=None,
        *,
        key=console,
        ts=None,
        nonce=None,
        headers=None,
        sign_path=None,
        sign_body=None,
        session=None,
        timeout=10,
    ):
        data = json.dumps(body).encode() if body is not None else b""
        hdrs = protocol.sign_request(
            key,
            method,
            sign_path or path,
            data if sign_body is None else sign_body,
            timestamp=ts,
            nonce=nonce,
        )
        if headers is not None:
            hdrs = headers
        resp = (session or requests).request(
            method,
            f"https://127.0.0.1:{port}{path}",
            data=data,
            headers=hdrs,
            verify=False,
            timeout=timeout,
        )
        return resp, hdrs.get(protocol.HEADER_NONCE, "")

    call.engine = engine

    yield call, dp, agent_pub, state
    server.shutdown()
    server.server_close()
    engine.shutdown()


def test_signed_apply_confirm_status_and_signed_responses(agent):
    call, dp, agent_pub, state = agent
    resp, nonce = call(
        "POST", "/v1/apply", {"bundle": bundle(), "version": 1, "confirm_timeout": 30}
    )
    assert resp.status_code == 200, resp.text
    protocol.verify_response(
        agent_pub, 200, resp.content, nonce, resp.headers[protocol.HEADER_SIGNATURE]
    )
    assert resp.json()["result"] == "applied" and resp.json()["confirm_deadline"]
    resp, _ = call("POST", "/v1/confirm", {"version": 1})
    assert resp.json() == {"result": "confirmed", "version": 1}
    resp, nonce = call("GET", "/v1/status")
    body = resp.json()
    assert body["applied"]["version"] == 1 and body["applied"]["confirmed"] is True
    assert body["backend"] == "recording" and "hostname" in body["facts"]
    protocol.verify_response(
        agent_pub, 200, resp.content, nonce, resp.headers[protocol.HEADER_SIGNATURE]
    )
    # a forged answer would not verify
    with pytest.raises(protocol.SignatureError):
        protocol.verify_response(
            agent_pub, 200, resp.content + b" ", nonce, resp.headers[protocol.HEADER_SIGNATURE]
        )


def test_certificate_is_the_pinned_one(agent):
    call, _, _, state = agent
    resp, _ = call("GET", "/v1/status")
    port = int(resp.url.split(":")[2].split("/")[0])
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    assert protocol.cert_fingerprint(pem.encode()) == state.cert_fingerprint()


def test_refused_requests_change_nothing(agent):
    call, dp, _, _ = agent
    call("POST", "/v1/apply", {"bundle": bundle(), "version": 5, "confirm_timeout": 0})
    before = len(dp.payloads), json.dumps(dp.tables, sort_keys=True)
    new = {"bundle": bundle("DROP"), "version": 6, "confirm_timeout": 0}
    cases = {
        "unsigned": dict(headers={}),
        "other key": dict(key=protocol.generate_private_key()),
        "tampered body": dict(sign_body=json.dumps(dict(new, version=7)).encode()),
        "tampered path": dict(sign_path="/v1/status"),
        "expired": dict(ts=int(time.time()) - 120),
        "future": dict(ts=int(time.time()) + 120),
    }
    for name, kwargs in cases.items():
        resp, _ = call("POST", "/v1/apply", new, **kwargs)
        assert resp.status_code == 401, name
    resp, _ = call("POST", "/v1/apply", dict(new, version=5))
    assert resp.status_code == 409 and "replay or downgrade" in resp.json()["error"]
    resp, _ = call("POST", "/v1/apply", dict(new, version=3))
    assert resp.status_code == 409
    resp, _ = call("POST", "/v1/apply", {"bundle": {"format": 2}, "version": 9})
    assert resp.status_code == 400 and resp.json()["error"]
    assert (len(dp.payloads), json.dumps(dp.tables, sort_keys=True)) == before
    # an exact replay of a good request (same nonce) is refused too
    resp, nonce = call("POST", "/v1/apply", new)
    assert resp.status_code == 200
    after = len(dp.payloads)
    resp, _ = call("POST", "/v1/apply", dict(new, version=7), nonce=nonce)
    assert resp.status_code == 409 and "nonce" in resp.json()["error"]
    assert len(dp.payloads) == after


def test_unknown_endpoint_and_bad_json(agent):
    call, _, _, _ = agent
    resp, _ = call("GET", "/v1/nothing")
    assert resp.status_code == 404
    resp, _ = call("POST", "/v1/confirm", {"version": "x"})
    assert resp.status_code == 400


def test_confirm_must_come_on_a_connection_opened_after_the_apply(agent):
    """A kept-alive connection opened before the apply passes stateful rules that drop
    every new connection: a confirm on it would prove nothing, so it is refused."""
    call, _, _, _ = agent
    old = requests.Session()
    assert call("GET", "/v1/status", session=old)[0].status_code == 200  # opened now
    r, _ = call("POST", "/v1/apply", {"bundle": bundle(), "version": 1}, session=old)
    assert r.status_code == 200 and r.json()["confirm_deadline"], r.text
    r, _ = call("POST", "/v1/confirm", {"version": 1}, session=old)
    assert r.status_code == 409, r.text
    assert r.json() == {
        "error": "confirm must arrive on a connection opened after the apply; "
        "this one was opened before",
        "result": "stale_connection",
    }
    r, _ = call("POST", "/v1/confirm", {"version": 1})  # a new connection
    assert r.status_code == 200 and r.json()["result"] == "confirmed", r.text
    old.close()


def test_a_client_that_gives_up_first_costs_a_log_line_not_a_traceback(agent, capfd, caplog):
    """The console's read timeout ran out while the apply waited (e.g. for the xtables
    lock): the agent finishes, cannot answer, and says so in one line."""
    call, _, _, _ = agent
    # the apply waits behind the engine's lock, the client gives up
    with call.engine._lock, pytest.raises(requests.exceptions.ReadTimeout):
        call("POST", "/v1/apply", {"bundle": bundle(), "version": 1}, timeout=0.3)
    deadline = time.monotonic() + 5
    while "the client left before the answer" not in caplog.text:
        assert time.monotonic() < deadline, caplog.text
        time.sleep(0.05)
    time.sleep(0.3)  # the handler's next read of the closed connection
    assert "Traceback" not in capfd.readouterr().err
