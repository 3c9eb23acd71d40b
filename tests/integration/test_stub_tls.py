"""`stub: {tls: true}` on the real engine: the stubs serve HTTPS with certificates of the run's own CA, which
the outputs export (PEM and a 0600 file); the host and a peer container verify it by every name the
certificate holds; control calls go over TLS (published or by exec); state answers by scenario; no private
key is in a label, an environment or an event; teardown leaves nothing, not even the CA file."""

from __future__ import annotations

import json
import ssl
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import envkit
from envkit.backends import Backend
from envkit.backends.base import PortKey
from envkit.events import Event

from .conftest import TEST_BLUEPRINTS, resources_of

BLUEPRINT = TEST_BLUEPRINTS / "stub-tls"
RUN = "it-stubtls"

#: run in the peer's container: GET https://HOST:PORT/PATH, verified with the CA given as argv[4]
PEER = """
import http.client, json, ssl, sys
host, port, path, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
c = http.client.HTTPSConnection(host, port, timeout=5, context=context)
try:
    c.request("GET", path)
    r = c.getresponse()
    print("OK", r.status, r.read().decode())
except Exception as e:
    print("ERR", type(e).__name__, getattr(e, "verify_message", ""))
"""


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return []


@pytest.fixture(scope="module")
def env(backend: Backend, events: list[Event]) -> Iterator[envkit.Environment]:
    with envkit.up(BLUEPRINT, name=RUN, backend=backend, on_event=events.append) as e:
        yield e
        ca_file = Path(e.outputs["BANK_CA_FILE"])
    assert resources_of(backend, RUN) == []
    assert not ca_file.exists() and not ca_file.parent.exists()  # this user's copy of the CA went with the run


def get(url: str, cafile: str | None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=cafile)
    with urllib.request.urlopen(url, timeout=5, context=context) as answer:
        return answer.status, answer.read()


def from_peer(env: envkit.Environment, host: str, port: int, path: str, ca: str) -> str:
    result = env.exec("peer", ["python3", "-c", PEER, host, str(port), path, ca])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_the_host_verifies_the_stub_with_the_exported_ca(env: envkit.Environment) -> None:
    out = env.outputs
    assert out["BANK_URL"].startswith("https://127.0.0.1:")
    assert out["BANK_CA"].startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE" not in out["BANK_CA"]
    path = Path(out["BANK_CA_FILE"])
    assert path.read_text() == out["BANK_CA"] and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert get(out["BANK_URL"] + "/balance", out["BANK_CA_FILE"]) == (200, b'{"balance": 100}')
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get(out["BANK_URL"] + "/balance", None)  # the system's CAs do not know the run's CA
    # the second replica's own published port, by the same CA
    second = env.info.replicas("bank")[1]
    assert get(f"https://127.0.0.1:{second.ports[PortKey(8443)].port}/balance", out["BANK_CA_FILE"])[0] == 200


def test_a_peer_container_verifies_every_name_of_the_certificate(env: envkit.Environment) -> None:
    ca = env.outputs["BANK_CA"]
    for name in ("bank", "bank-1", "bank-2", "api.bank.example", f"envkit-{RUN}-bank-2"):
        assert from_peer(env, name, 8443, "/balance", ca) == 'OK 200 {"balance": 100}', name
    assert from_peer(env, "vault", 9443, "/secrets/k", ca) == 'OK 200 {"name": "k"}'  # one CA for the run
    assert from_peer(env, "bank", 8443, "/balance", "").startswith("ERR SSLCertVerificationError")


def test_control_calls_and_state_go_over_tls(env: envkit.Environment) -> None:
    bank = env.stub("bank")  # published: through its port, verified with the CA of its label
    assert bank.ca_pem == env.outputs["BANK_CA"] == env.stub("vault").ca_pem
    bank.reset()
    assert bank.state("account") == "open"
    url, cafile = env.outputs["BANK_URL"], env.outputs["BANK_CA_FILE"]
    req = urllib.request.Request(url + "/freeze", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=5, context=ssl.create_default_context(cafile=cafile)) as answer:
        assert answer.status == 204
    with pytest.raises(urllib.error.HTTPError) as frozen:
        get(url + "/balance", cafile)
    frozen.value.close()
    assert frozen.value.code == 423
    bank.set_state("open", "account")
    assert get(url + "/balance", cafile)[0] == 200
    assert bank.called("POST", "/freeze") == 1
    vault = env.stub("vault")  # not published: by exec in its container, over TLS to 127.0.0.1
    vault.respond("GET", "/secrets/{name}", status=403, times=1)
    assert from_peer(env, "vault", 9443, "/secrets/x", env.outputs["BANK_CA"]).startswith("OK 403")
    assert vault.called("GET", "/secrets/x") == 1


def test_no_private_key_leaves_the_stub(env: envkit.Environment, backend: Backend, events: list[Event]) -> None:
    for c in env.info.replicas("bank") + env.info.replicas("vault") + env.info.replicas("peer"):
        state = backend.inspect_container(c.id)
        assert "PRIVATE KEY" not in json.dumps(dict(state.labels)) + json.dumps(dict(state.environment))
    assert not any("PRIVATE KEY" in f"{e.message} {e.detail}" for e in events)
    listing = env.exec("bank", ["stat", "-c", "%a %U %n", "/run/envkit-tls/key.pem", "/run/envkit-tls/cert.pem"])
    assert listing.output.split("\n")[:2] == ["400 nobody /run/envkit-tls/key.pem", "444 nobody /run/envkit-tls/cert.pem"]
