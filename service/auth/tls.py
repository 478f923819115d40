"""TLS and mutual TLS for the gRPC and REST ports, from PARETO_TLS_* settings.

- PARETO_TLS_CERT_FILE + PARETO_TLS_KEY_FILE: PEM certificate chain and private key;
  both ports then speak TLS only (plaintext clients fail; REST is HTTPS).
- PARETO_TLS_CLIENT_CA_FILE (needs the two above): PEM CA bundle; every client must
  present a certificate signed by it (mTLS).

The files are checked at start with the standard library's `ssl` (PEM, the key matches
the certificate, the CA bundle holds certificates); a problem stops the server with a
SettingsError naming the setting.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import grpc

from service.settings import Settings, SettingsError

log = logging.getLogger(__name__)

CERT = "PARETO_TLS_CERT_FILE"
KEY = "PARETO_TLS_KEY_FILE"
CLIENT_CA = "PARETO_TLS_CLIENT_CA_FILE"


def _read(path: Path, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SettingsError(f"{setting}: cannot read {path}: {exc.strerror}") from None


def _check_pem(data: bytes, marker: bytes, setting: str, path: Path, what: str) -> None:
    if b"-----BEGIN " not in data or marker not in data:
        raise SettingsError(f"{setting}: {path} holds no PEM {what}")


def _check_pair(cert: Path, key: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # An encrypted key gets an empty password (and fails) rather than a tty prompt.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        raise SettingsError(
            f"{CERT} / {KEY}: {cert} and {key} are not a certificate and its unencrypted "
            f"private key ({exc.reason or exc})"
        ) from None


def _check_ca(ca: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=str(ca))
    except ssl.SSLError as exc:
        raise SettingsError(
            f"{CLIENT_CA}: {ca} is not a PEM CA bundle ({exc.reason or exc})"
        ) from None
    if not context.get_ca_certs():
        raise SettingsError(f"{CLIENT_CA}: {ca} holds no CA certificate")


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """Credentials for the gRPC port, or None for plaintext. SettingsError when the
    TLS settings are incomplete or their files unusable."""
    cert, key, ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    if cert is None and key is None:
        if ca is not None:
            raise SettingsError(f"{CLIENT_CA} needs {CERT} and {KEY} (mTLS = TLS + client certs)")
        return None
    if cert is None or key is None:
        raise SettingsError(f"{CERT} and {KEY} must be set together")
    cert_pem, key_pem = _read(cert, CERT), _read(key, KEY)
    _check_pem(cert_pem, b"CERTIFICATE-----", CERT, cert, "certificate")
    _check_pem(key_pem, b"PRIVATE KEY-----", KEY, key, "private key")
    _check_pair(cert, key)
    ca_pem = None
    if ca is not None:
        ca_pem = _read(ca, CLIENT_CA)
        _check_pem(ca_pem, b"CERTIFICATE-----", CLIENT_CA, ca, "CA certificate")
        _check_ca(ca)
    log.info("TLS on%s", " with client certificates required (mTLS)" if ca_pem else "")
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=ca_pem is not None
    )


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The REST port's TLS context from the same settings (checked by `server_credentials`
    first), or None for plaintext: TLS 1.2 or later, and with PARETO_TLS_CLIENT_CA_FILE a
    client certificate signed by that CA is required."""
    cert, key, ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    if cert is None or key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key, password=lambda: b"")
    if ca is not None:
        context.load_verify_locations(cafile=str(ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
