"""TLS stubs without an engine: the `tls:` key, the plan's certificate step and labels, the run CA's
certificates as a TLS client checks them (a real handshake on loopback with the stub server's own code),
the CA file, and the `${services.NAME.ca_pem|ca_file}` references."""

from __future__ import annotations

import io
import socket
import ssl
import stat
import tarfile
import threading
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from envkit import labels as L
from envkit.backends.base import Capability
from envkit.blueprint.model import Blueprint
from envkit.errors import BlueprintError
from envkit.plan import RunIdentity, make_plan
from envkit.steps import InstallCertificate
from envkit.stubs import tls
from envkit.stubs.server.stubserver.server import TLSServer, tls_context

ALL = frozenset(Capability)
IDENTITY = RunIdentity("r1", "me", "2026-01-01T00:00:00Z", "0")
TEXT = """
services:
  pay:
    kind: stub
    replicas: 2
    hostname: gateway
    networks: {edge: {aliases: [pay.example]}}
    ports: [8443]
    stub: {port: 8443, tls: {names: [pay.partner.example, 10.1.2.3]}, routes: [{path: /}]}
networks: {edge: {}}
outputs:
  CA: ${services.pay.ca_pem}
  CA_FILE: ${services.pay.ca_file}
"""


def test_the_plan_certifies_each_replica_before_it_starts(load_text: Callable[..., Blueprint]) -> None:
    bp = load_text(TEXT)
    with pytest.raises(ValueError, match="plan it with the run's CertAuthority"):
        make_plan(bp, IDENTITY, frozenset(), {"pay": "envkit/stub:x"}, capabilities=ALL)
    ca = tls.CertAuthority.new("r1")
    plan = make_plan(bp, IDENTITY, frozenset(), {"pay": "envkit/stub:x"}, capabilities=ALL, authority=ca)
    step = plan.step("tls:pay-2")
    assert step.after == ("create:pay-2",) and "tls:pay-2" in plan.step("start:pay-2").after
    assert isinstance(step.payload, InstallCertificate)
    assert step.payload.names == ("pay", "pay-2", "pay.example", "pay.partner.example", "10.1.2.3",
                                  "envkit-r1-pay-2", "gateway", "localhost", "127.0.0.1", "::1")
    labels = dict(plan.step("create:pay-1").payload.spec.labels)  # type: ignore[attr-defined]
    assert labels[L.TLS_CA] == ca.cert_pem and "PRIVATE" not in plan.text() + repr(step)
    assert bp.services["pay"].ready is not None and bp.services["pay"].ready.kind == "tcp"
    with pytest.raises(BlueprintError, match="engine swarm cannot copy files into containers"):
        make_plan(bp, IDENTITY, frozenset(), {"pay": "x"}, capabilities=ALL - {Capability.COPY_FILES},
                  engine="swarm", authority=ca)


def _serve(folder: Path) -> tuple[TLSServer, int]:
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"hi")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = type("S", (TLSServer,), {"context": tls_context(str(folder))})(("127.0.0.1", 0), Hello)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def handshake(context: ssl.SSLContext, port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        context.wrap_socket(raw, server_hostname="localhost").close()


def test_a_client_trusting_the_run_ca_verifies_the_stub_by_name(tmp_path: Path) -> None:
    ca = tls.CertAuthority.new("r1")
    with tarfile.open(fileobj=io.BytesIO(tls.archive(ca, ("pay", "localhost", "127.0.0.1")))) as tar:
        members = {m.name: (m.mode, m.uid) for m in tar.getmembers()}
        tar.extractall(tmp_path, filter="data")
    assert members == {"cert.pem": (0o444, 65534), "key.pem": (0o400, 65534), "ca.pem": (0o444, 65534)}
    assert (tmp_path / "ca.pem").read_text() == ca.cert_pem
    server, port = _serve(tmp_path)
    try:
        trusting = ssl.create_default_context(cadata=ca.cert_pem)
        for host in ("localhost", "127.0.0.1"):
            with urllib.request.urlopen(f"https://{host}:{port}/", timeout=5, context=trusting) as answer:
                assert answer.read() == b"hi"
        with pytest.raises(ssl.SSLCertVerificationError):  # the system's CAs do not know it
            handshake(ssl.create_default_context(), port)
        with pytest.raises(ssl.SSLCertVerificationError):  # another run's CA does not vouch for it
            handshake(ssl.create_default_context(cadata=tls.CertAuthority.new("r2").cert_pem), port)
    finally:
        server.shutdown()
        server.server_close()


def test_the_ca_file_is_this_users_own_and_goes_with_the_run(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    monkeypatch.setattr(tls.tempfile, "tempdir", str(tmp_path))
    path = Path(tls.ca_file("r1", "pay", "PEM\n"))
    assert path.read_text() == "PEM\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert tls.ca_file("r1", "pay", "PEM\n") == str(path)
    assert Path(tls.ca_file("r1", "pay", "NEW\n")).read_text() == "NEW\n"
    tls.forget("r1")
    assert not path.parent.exists()


@pytest.mark.parametrize(("text", "message"), [
    ("{kind: stub, stub: {tls: yes please}}", "services.pay.stub.tls: expected true, false or a mapping {names}"),
    ("{kind: stub, stub: {tls: {names: [bad name!]}}}",
     "services.pay.stub.tls.names[0]: expected a host name or an IP address, got 'bad name!'"),
    ("{kind: stub, stub: {tls: {names: pay.example}}}", "services.pay.stub.tls.names: expected a list of host names"),
    ("{kind: stub, stub: {tls: {name: [x]}}}", "unknown key 'name' (did you mean 'names'?)"),
])
def test_bad_tls_keys_are_named_by_key_path(load_text: Callable[..., Blueprint], text: str, message: str) -> None:
    with pytest.raises(BlueprintError) as err:
        load_text(f"services:\n  pay: {text}\n")
    assert message in str(err.value)


def test_ca_references_need_a_tls_stub(load_text: Callable[..., Blueprint]) -> None:
    with pytest.raises(BlueprintError) as err:
        load_text("services:\n  pay: {kind: stub, stub: {}}\noutputs:\n  CA: ${services.pay.ca_file}\n")
    assert "outputs.CA: service 'pay' is no TLS stub: '${services.pay.ca_file}' needs 'kind: stub' with" in str(err.value)
    assert load_text(TEXT).services["pay"].stub.tls.names == ("pay.partner.example", "10.1.2.3")  # type: ignore[union-attr]


def test_a_rebuild_of_a_tls_stub_is_refused(load_text: Callable[..., Blueprint]) -> None:
    from envkit.errors import UsageError
    from envkit.live import plan_rebuild
    from envkit.runs import RunInfo

    info = RunInfo("r1", "b", "", "", "", (), (), "127.0.0.1")
    with pytest.raises(UsageError, match="rebuild: pay is a TLS stub, whose run CA cannot sign a new certificate"):
        plan_rebuild(info, load_text(TEXT), ["pay"], {"pay": "x"}, frozenset())


def test_envkit_copies_the_files_where_the_stub_reads_them() -> None:
    from envkit.stubs import tls
    from envkit.stubs.server.stubserver import server

    assert tls.TLS_DIR == server.TLS_DIR
