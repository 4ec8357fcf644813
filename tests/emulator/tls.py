"""Certificates for the emulator: a throw-away CA and server certificate, and client certificates for tests.

msal refuses plain http authorities (msal's ``authority.py``, ``canonicalize()``: the authority must be an https URL;
AzureAD/microsoft-authentication-library-for-python), so the emulator serves HTTPS with a CA generated at start;
clients trust it through the ready file's ``ca_path``.
"""

import base64
import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "entrascim emulator"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder, days):
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))


def _write(path, data, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def generate_server_material(directory):
    """Create ``ca.pem``, ``server.pem`` and ``server.key`` in ``directory``; return their paths."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_builder = x509.CertificateBuilder().subject_name(_name("entrascim emulator CA")).issuer_name(_name("entrascim emulator CA"))
    ca_builder = _validity(ca_builder, 7).serial_number(x509.random_serial_number()).public_key(ca_key.public_key())
    ca_builder = ca_builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    ca_builder = ca_builder.add_extension(
        x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                      key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
        critical=True)
    ca_builder = ca_builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
    ca_cert = ca_builder.sign(ca_key, hashes.SHA256())

    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_cert.subject)
    builder = _validity(builder, 7).serial_number(x509.random_serial_number()).public_key(key.public_key())
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())

    ca_path = os.path.join(directory, "ca.pem")
    cert_path = os.path.join(directory, "server.pem")
    key_path = os.path.join(directory, "server.key")
    _write(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_path, cert_path, key_path


def make_client_certificate(common_name="entrascim test client", days=30, password=None):
    """Return ``(certificate_pem, private_key_pem)`` (both str) of a self-signed RSA client certificate.

    Register ``certificate_pem`` as a client's ``certificate_pem`` in the seed; sign client assertions with the key.
    With ``password`` the key is encrypted (PKCS#8, best available encryption).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    builder = x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
    builder = _validity(builder, days).serial_number(x509.random_serial_number()).public_key(key.public_key())
    cert = builder.sign(key, hashes.SHA256())
    encryption = serialization.BestAvailableEncryption(password.encode("utf-8")) if password else serialization.NoEncryption()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), key_pem.decode("ascii")


def _b64url(data):
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def certificate_thumbprints(certificate_pem):
    """Return ``{"x5t": ..., "x5t#S256": ...}``: base64url SHA-1 and SHA-256 thumbprints, as JWT headers carry them."""
    cert = x509.load_pem_x509_certificate(certificate_pem.encode("ascii") if isinstance(certificate_pem, str) else certificate_pem)
    return {"x5t": _b64url(cert.fingerprint(hashes.SHA1())), "x5t#S256": _b64url(cert.fingerprint(hashes.SHA256()))}


def load_certificate_public_key(certificate_pem):
    cert = x509.load_pem_x509_certificate(certificate_pem.encode("ascii") if isinstance(certificate_pem, str) else certificate_pem)
    return cert.public_key()
