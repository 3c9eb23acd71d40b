"""TLS for ``kind: stub`` services (``stub: {tls: true}``, docs/stubs.md#tls): a certificate authority per run,
a server certificate per stub replica, and the CA's certificate handed to tests.

    CertAuthority.new(run)   made by the process that plans the run (``envkit.api``), in memory only; its
                             private key is never written, labelled or printed, and is gone with the process
    names(svc, run, n)       what replica n's certificate is valid for: the service, its per-replica name,
                             its aliases, its container name, its host name, localhost, 127.0.0.1 and ::1
    archive(ca, names)       the files the plan's ``tls`` step copies into the created container (TLS_DIR):
                             cert.pem, key.pem (0400, the stub's user), ca.pem
    ca_file(run, svc, pem)   ``${services.NAME.ca_file}``: the CA certificate in a file of this user (0600)

The CA's certificate (public) is the label ``io.envkit.tls-ca`` of each TLS stub container, so any process
that finds the run by its labels resolves ``${services.NAME.ca_pem}``. ``cryptography`` is imported on
first use: a run without a TLS stub never loads it.
"""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envkit import labels as L
from envkit.backends.types import ContainerSpec
from envkit.errors import EnvkitError
from envkit.steps import InstallCertificate, Step

if TYPE_CHECKING:
    from envkit.blueprint.model import Blueprint, Service

__all__ = ["TLS_DIR", "CertAuthority", "archive", "ca_dir", "ca_file", "forget", "names", "plan_step", "wanted"]

#: where the stub finds its certificate, key and CA (``stubserver.server.TLS_DIR``, which a test holds
#: equal; made by its image, owned by the stub's user). Not imported from there: that module is the
#: stub's HTTP server, which loading a blueprint has no use for.
TLS_DIR = "/run/envkit-tls"

STUB_UID = 65534
#: a run may live long (detached, --ttl): its certificates outlast any sensible run
VALID_FOR = dt.timedelta(days=397)


def _backdated() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)  # a peer's clock a little behind still accepts it


@dataclass(frozen=True)
class CertAuthority:
    """One run's CA: its certificate (PEM) and, only in this process's memory, its private key."""

    run: str
    cert_pem: str
    _key: Any = field(repr=False, compare=False)
    _cert: Any = field(repr=False, compare=False)

    @classmethod
    def new(cls, run: str) -> CertAuthority:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "envkit"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"envkit run {run} CA")])
        public = key.public_key()
        start = _backdated()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
                .serial_number(x509.random_serial_number()).not_valid_before(start)
                .not_valid_after(start + VALID_FOR)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(run, cert.public_bytes(serialization.Encoding.PEM).decode(), key, cert)

    def issue(self, dns: tuple[str, ...]) -> tuple[bytes, bytes]:
        """(certificate PEM, private key PEM) of a server valid for ``dns`` (host names and IP addresses)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = []
        for n in dns:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        start = _backdated()
        ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0][:64])]))
                .issuer_name(self._cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(start)
                .not_valid_after(start + VALID_FOR)
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(self._key, hashes.SHA256()))
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        return cert.public_bytes(serialization.Encoding.PEM), pem


def names(svc: Service, run: str, replica: int) -> tuple[str, ...]:
    """The names replica ``replica`` of a TLS stub answers to, its DNS names in the run first."""
    extra = svc.stub.tls.names if svc.stub is not None and svc.stub.tls is not None else ()
    found = [svc.name, f"{svc.name}-{replica}", *(a for net in svc.networks for a in net.aliases), *extra,
             L.container_name(run, svc.name, replica), *((svc.hostname,) if svc.hostname else ()),
             "localhost", "127.0.0.1", "::1"]
    return tuple(dict.fromkeys(found))


def archive(ca: CertAuthority, dns: tuple[str, ...]) -> bytes:
    """A tar of cert.pem, key.pem (readable by the stub's user only) and ca.pem, for ``copy_into`` TLS_DIR."""
    cert, key = ca.issue(dns)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data, mode in (("cert.pem", cert, 0o444), ("key.pem", key, 0o400),
                                 ("ca.pem", ca.cert_pem.encode(), 0o444)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), mode, STUB_UID, STUB_UID, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ca_dir(run: str) -> Path:
    """Where this user's copies of a run's CA certificates are (``ca_file``)."""
    return Path(tempfile.gettempdir()) / f"envkit-tls-{os.getuid()}" / run


def ca_file(run: str, service: str, pem: str) -> str:
    """The path of a file holding ``pem``, written (0600, atomically) when it is missing or differs."""
    folder = ca_dir(run)
    path = folder / f"{service}-ca.pem"
    try:
        if path.read_text() == pem:
            return str(path)
    except OSError:
        pass
    folder.parent.mkdir(mode=0o700, exist_ok=True)
    if folder.parent.is_symlink() or folder.parent.stat().st_uid != os.getuid():  # a shared /tmp: someone else's
        raise EnvkitError(f"{folder.parent} is not this user's own folder; remove it and try again")
    folder.mkdir(mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".ca-")  # 0600
    with os.fdopen(fd, "w") as fh:
        fh.write(pem)
    os.replace(tmp, path)
    return str(path)


def forget(run: str) -> None:
    """Remove this user's copies of a run's CA certificates (when the run is torn down)."""
    shutil.rmtree(ca_dir(run), ignore_errors=True)


def plan_step(svc: Service, replica: int, spec: ContainerSpec, run: str,
              authority: CertAuthority | None) -> tuple[ContainerSpec, Step]:
    """For the planner: a TLS stub replica's container labelled with the CA's certificate, and the step that
    copies its server certificate in after it is created."""
    if authority is None:
        raise ValueError(f"service {svc.name} is a TLS stub: plan it with the run's CertAuthority")
    labels = tuple(sorted({**dict(spec.labels), L.TLS_CA: authority.cert_pem}.items()))
    step = Step(f"tls:{svc.name}-{replica}", InstallCertificate(spec.name, names(svc, run, replica), authority),
                "server certificate of the run's CA", (f"create:{svc.name}-{replica}",), (svc.name,), replica)
    return replace(spec, labels=labels), step


def wanted(bp: Blueprint, services: tuple[str, ...]) -> bool:
    """Whether any of ``services`` is a TLS stub (then the run needs a CertAuthority)."""
    return any((s := bp.services[n].stub) is not None and s.tls is not None for n in services)
