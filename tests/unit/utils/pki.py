# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Throw-away PKI for the unit tests: a CA, a server certificate for 127.0.0.1, client certificates."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import datetime
import hashlib
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key, password=None):
    encryption = serialization.BestAvailableEncryption(password.encode("utf-8")) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path, data):
    with open(path, "wb") as handle:
        handle.write(data)
    return path


class CertificateAuthority:
    """A self-signed CA that issues server and client certificates."""

    def __init__(self, common_name):
        self.key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self):
        return _pem_cert(self.cert)

    def issue(self, common_name, server=False, days=30, key=None, not_before_days=-1):
        key = key or _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=not_before_days)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False,
            )
        return key, builder.sign(self.key, hashes.SHA256())


class TestPKI:
    """All the files the tests need, written under ``directory``."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.ca = CertificateAuthority("entrascim test CA")
        self.ca_path = _write(os.path.join(directory, "ca.pem"), self.ca.pem)
        server_key, server_cert = self.ca.issue("127.0.0.1", server=True)
        self.server_cert_path = _write(os.path.join(directory, "server.pem"), _pem_cert(server_cert))
        self.server_key_path = _write(os.path.join(directory, "server.key"), _pem_key(server_key))
        # A bundle that does NOT contain our CA (stands in for the machine's REQUESTS_CA_BUNDLE).
        self.other_ca = CertificateAuthority("some other CA")
        self.other_bundle_path = _write(os.path.join(directory, "other-bundle.pem"), self.other_ca.pem)
        # The app registration's certificate: key + cert in one PEM file, plain and encrypted.
        self.client_key, self.client_cert = self.ca.issue("entrascim client")
        # The certificate comes first in the file: the loader must pair key and certificate itself.
        self.client_pem_path = _write(
            os.path.join(directory, "client.pem"), _pem_cert(self.client_cert) + _pem_key(self.client_key))
        self.client_password = "Pem-Passw0rd-That-Is-Long-Enough"
        self.client_encrypted_pem_path = _write(
            os.path.join(directory, "client-encrypted.pem"),
            _pem_key(self.client_key, self.client_password) + _pem_cert(self.ca.cert) + _pem_cert(self.client_cert))
        # A certificate the app registration does not know (signs assertions the server must refuse).
        self.rogue_key, self.rogue_cert = self.ca.issue("rogue client")
        self.rogue_pem_path = _write(
            os.path.join(directory, "rogue.pem"), _pem_key(self.rogue_key) + _pem_cert(self.rogue_cert))
        expired_key, expired_cert = self.ca.issue("expired client", days=-1, not_before_days=-10)
        self.expired_pem_path = _write(
            os.path.join(directory, "expired.pem"), _pem_key(expired_key) + _pem_cert(expired_cert))

    @staticmethod
    def thumbprint_sha256(cert):
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()

    @staticmethod
    def thumbprint_sha1(cert):
        return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest()
