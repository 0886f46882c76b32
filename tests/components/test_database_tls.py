"""The metadata DB's TLS: its URLs in libpq's and asyncpg's forms, the CA bundles, the RDS roots."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from components.airflow.secrets import async_database_url, database_url
from components.aws.database import RDS_CA_BUNDLE, RDS_CAS, rds_root_cas
from components.endpoints import CaBundle, DatabaseEndpoint, ca_certificates, common_name
from tests.e2e.harness import make_ca_and_server_cert

MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
CA_FILE = "/opt/airflow/db-ca/ca.crt"
PASSWORD = "p@ss:w/rd$1%?#&=+ "  # every character that means something in a URL, and '$'


@pytest.mark.parametrize("ca", [None, CA_FILE])
@pytest.mark.parametrize("mode", MODES)
def test_libpq_url_carries_sslmode_and_the_ca_file(mode: str, ca: str | None) -> None:
    url = database_url("postgresql+psycopg2", "us@r", PASSWORD, "db.local", 5432, "air$flow", mode, ca)
    parts = urlsplit(url)
    assert (unquote(parts.username or ""), unquote(parts.password or "")) == ("us@r", PASSWORD)
    assert parts.hostname == "db.local" and parts.port == 5432 and unquote(parts.path) == "/air$flow"
    assert "$" not in url  # Airflow would expand it
    expected = {"sslmode": [mode]} | ({"sslrootcert": [ca]} if ca else {})
    assert parse_qs(parts.query, strict_parsing=True) == expected


@pytest.mark.parametrize("ca", [None, CA_FILE])
@pytest.mark.parametrize("mode", MODES)
def test_async_url_carries_the_mode_as_ssl_and_the_ca_file_in_a_dsn(mode: str, ca: str | None) -> None:
    url = async_database_url("us@r", PASSWORD, "db.local", 5432, "air$flow", mode, ca)
    parts = urlsplit(url)
    assert parts.scheme == "postgresql+asyncpg" and "$" not in url
    assert (unquote(parts.username or ""), unquote(parts.password or "")) == ("us@r", PASSWORD)
    # SQLAlchemy hands these to asyncpg.connect() as keywords: `sslmode`/`sslrootcert` would be a TypeError.
    query = parse_qs(parts.query, strict_parsing=True)
    assert set(query) == ({"ssl", "dsn"} if ca else {"ssl"}) and query["ssl"] == [mode]
    if ca:
        dsn = urlsplit(query["dsn"][0])
        assert (dsn.scheme, dsn.netloc, dsn.path) == ("postgresql", "", "")
        assert parse_qs(dsn.query, strict_parsing=True) == {"sslrootcert": [ca]}


def _endpoint(sslmode: Any, ca: CaBundle | None) -> DatabaseEndpoint:
    # The checks need no password; a real Output wants a Pulumi event loop.
    return DatabaseEndpoint(host="h", port=5432, name="n", user="u", password=cast(Any, "p"), sslmode=sslmode, ca=ca)


def test_a_verifying_endpoint_needs_a_ca_and_only_it_takes_one() -> None:
    for mode in ("verify-ca", "verify-full"):
        with pytest.raises(ValueError, match="needs a CA bundle"):
            _endpoint(mode, None)
        assert _endpoint(mode, CaBundle.system()).ca == CaBundle(image_file="/etc/ssl/certs/ca-certificates.crt")
    for mode in ("disable", "prefer", "require"):
        with pytest.raises(ValueError, match="only applies to sslmode verify-ca or verify-full"):
            _endpoint(mode, CaBundle.system())
    with pytest.raises(ValueError, match="exactly one"):
        CaBundle(pem="x", secret="s")
    with pytest.raises(ValueError, match="exactly one"):
        CaBundle()


def test_ca_certificates_accepts_ca_certificates_only(tmp_path: Path) -> None:
    ca, server, key = make_ca_and_server_cert(tmp_path)
    [(block, fields)] = ca_certificates(ca.read_text())
    assert common_name(fields) == "airflow-k8s e2e CA" and block.startswith("-----BEGIN CERTIFICATE-----")
    assert len(ca_certificates(ca.read_text() + "\n" + ca.read_text())) == 2
    cases = {
        "": "holds no PEM certificate",
        "not a certificate": "holds no PEM certificate",
        ca.read_text()[:300]: "without its END line",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n": "certificate 1 does not parse",
        ca.read_text() + server.read_text(): "certificate 2 is not a CA certificate",
        ca.read_text() + key.read_text(): "holds a private key",
    }
    for text, message in cases.items():
        with pytest.raises(ValueError, match=message):
            ca_certificates(text)


# ---- the vendored RDS roots ------------------------------------------------------------------


def test_vendored_rds_bundle_is_the_file_its_source_note_describes() -> None:
    note = (RDS_CA_BUNDLE.parent / "SOURCE.md").read_text()
    assert hashlib.sha256(RDS_CA_BUNDLE.read_bytes()).hexdigest() in note
    roots = ca_certificates(RDS_CA_BUNDLE.read_text())
    assert len(roots) == 102
    names = [common_name(fields) for _, fields in roots]
    assert all(re.fullmatch(r"Amazon RDS [A-Za-z0-9 -]+ Root CA (RSA2048|RSA4096|ECC384) G1", n) for n in names), names
    # Root CAs: each its own issuer.
    assert all(fields["subject"] == fields["issuer"] for _, fields in roots)
    regions = {n.removeprefix("Amazon RDS ").split(" Root CA ")[0] for n in names}
    assert {"eu-west-1", "us-east-1", "ap-southeast-7", "mx-central-1"} <= regions
    for region in regions:  # every region has all three key types
        assert sum(n.startswith(f"Amazon RDS {region} Root CA ") for n in names) == 3, region


@pytest.mark.parametrize("identifier", sorted(RDS_CAS))
def test_rds_root_cas_are_the_regions_three_roots(identifier: str) -> None:
    pem = rds_root_cas("eu-west-1", identifier)
    names = sorted(common_name(fields) for _, fields in ca_certificates(pem))
    assert names == [f"Amazon RDS eu-west-1 Root CA {kind} G1" for kind in ("ECC384", "RSA2048", "RSA4096")]
    assert f"Amazon RDS eu-west-1 Root CA {RDS_CAS[identifier]} G1" in names


def test_rds_root_cas_refuse_a_region_the_bundle_lacks() -> None:
    with pytest.raises(ValueError, match="has no 'Amazon RDS us-gov-west-1 Root CA RSA2048 G1'"):
        rds_root_cas("us-gov-west-1", "rds-ca-rsa2048-g1")
