"""`GET /v1/status?since=G` (generation.py): a small signed "unchanged" answer while nothing
the status reports has moved; the full status after an apply, a confirm, or drift."""

import json
import threading

import pytest
import requests
import urllib3  # noqa: F401 - named in the warning filter

from rampart_agent import protocol
from rampart_agent.dataplane import RecordingDataplane
from rampart_agent.engine import Engine
from rampart_agent.generation import RECHECK_SECONDS, StatusGeneration, parse_since
from rampart_agent.server import make_server
from rampart_agent.state import StateDir
from tests.rampart_agent.engine_env import FakeClock, bundle

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture
def agent(tmp_path):
    state = StateDir(tmp_path)
    state.ensure_identity()
    console = protocol.generate_private_key()
    state.set_console_key(protocol.public_key_b64(console))
    dp = RecordingDataplane()
    clock = FakeClock()
    engine = Engine(state, dp, clock=clock)
    engine.start()
    server = make_server(engine, state, "127.0.0.1:0")
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    port = server.server_address[1]
    agent_pub = state.ensure_identity().public_key()

    def call(method, path, body=None, *, sign_path=None):
        data = json.dumps(body).encode() if body is not None else b""
        clock.t += 0.001  # nonces are remembered by timestamp: keep the fake clock moving
        headers = protocol.sign_request(
            console, method, sign_path or path, data, timestamp=int(clock.time())
        )
        resp = requests.request(
            method,
            f"https://127.0.0.1:{port}{path}",
            data=data,
            headers=headers,
            verify=False,
            timeout=10,
        )
        if resp.status_code != 401:
            protocol.verify_response(
                agent_pub,
                resp.status_code,
                resp.content,
                headers[protocol.HEADER_NONCE],
                resp.headers[protocol.HEADER_SIGNATURE],
            )
        return resp

    def apply(version, rules=("-j ACCEPT",)):
        resp = call(
            "POST",
            "/v1/apply",
            {"bundle": bundle(rules), "version": version, "confirm_timeout": 60},
        )
        assert resp.status_code == 200, resp.text
        assert call("POST", "/v1/confirm", {"version": version}).status_code == 200

    apply(1)
    yield call, apply, dp, clock
    server.shutdown()
    server.server_close()
    engine.shutdown()


def test_unchanged_answer_while_nothing_changed(agent):
    call, _, _, _ = agent
    full = call("GET", "/v1/status").json()
    gen = full["generation"]
    assert full["applied"]["version"] == 1 and "drift" in full
    resp = call("GET", f"/v1/status?since={gen}")
    assert resp.status_code == 200
    assert resp.json() == {"unchanged": True, "generation": gen, "peer": "127.0.0.1"}
    # an older generation gets the full status back
    older = call("GET", f"/v1/status?since={gen - 1}").json()
    assert older["generation"] == gen and older["applied"]["version"] == 1


def test_full_answer_after_an_apply_and_after_a_confirm(agent):
    call, apply, _, _ = agent
    gen = call("GET", "/v1/status").json()["generation"]
    apply(2, ("-j DROP",))
    after = call("GET", f"/v1/status?since={gen}").json()
    assert "unchanged" not in after and after["applied"]["version"] == 2
    assert after["generation"] != gen
    assert call("GET", f"/v1/status?since={after['generation']}").json()["unchanged"] is True


def test_drift_is_found_within_the_recheck_window(agent):
    call, _, dp, clock = agent
    gen = call("GET", "/v1/status").json()["generation"]
    dp.tables["v4"]["filter"]["RPT-INPUT"].insert(0, "-A RPT-INPUT -s 198.19.255.9/32 -j ACCEPT")
    # within the window the last kernel read stands (no kernel read per poll)
    assert call("GET", f"/v1/status?since={gen}").json()["unchanged"] is True
    clock.t += RECHECK_SECONDS
    drifted = call("GET", f"/v1/status?since={gen}").json()
    assert drifted["drift"]["drifted"] is True and drifted["generation"] > gen


def test_signature_covers_since(agent):
    call, _, _, _ = agent
    gen = call("GET", "/v1/status").json()["generation"]
    # signed without the query, sent with it: refused
    assert call("GET", f"/v1/status?since={gen}", sign_path="/v1/status").status_code == 401
    # signed for one generation, sent with another: refused
    resp = call("GET", f"/v1/status?since={gen}", sign_path=f"/v1/status?since={gen + 1}")
    assert resp.status_code == 401


def test_malformed_since_is_refused(agent):
    call, _, _, _ = agent
    assert call("GET", "/v1/status?since=abc").status_code == 400
    assert call("GET", "/v1/status?other=1").status_code == 400
    assert parse_since("") is None and parse_since("since=7") == 7


def test_generation_moves_only_with_the_status_and_never_repeats_after_a_restart():
    clock = FakeClock()
    gen = StatusGeneration(10, clock.monotonic)
    first = gen.observe({"a": 1}, "r")
    assert gen.observe({"a": 1}, "r") == first and gen.fresh(first, "r") == first
    assert gen.fresh(first, "other records") is None  # an apply changed the records
    clock.t += 10
    assert gen.fresh(first, "r") is None  # too old: the next poll re-reads the kernel
    assert gen.observe({"a": 2}, "r") == first + 1
    assert StatusGeneration().generation > first + 1  # a restarted agent starts higher
