"""The enrollment wire format, version 1, pinned: a rename here breaks every enrolled
device in the field, so it fails this test first."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleetguard.protocol import (
    CA_BUNDLE_PATH,
    ENROLL_PATH,
    ENROLLMENT_TOKEN_PREFIX,
    ENROLLMENT_VERSION,
    RENEW_PATH,
    CertificateResponse,
    EnrollmentToken,
    EnrollRequest,
    MalformedEnrollmentTokenError,
    RenewRequest,
    parse_enrollment_token,
)

SECRET = "A" * 20 + "-_z9"
ROOT = "0123456789abcdef" * 4


def test_version_paths_and_token_prefix_are_pinned() -> None:
    assert ENROLLMENT_VERSION == 1
    assert (ENROLL_PATH, RENEW_PATH, CA_BUNDLE_PATH) == ("/v1/enroll", "/v1/renew", "/v1/ca.pem")
    assert ENROLLMENT_TOKEN_PREFIX == "fge1"


def test_body_field_names_are_pinned() -> None:
    assert list(EnrollRequest.model_fields) == ["csr", "token", "serial"]
    assert list(RenewRequest.model_fields) == ["csr"]
    assert list(CertificateResponse.model_fields) == [
        "device_id", "serial", "certificate_pem", "chain_pem", "ca_bundle_pem", "not_after",
    ]


def test_a_token_is_prefix_secret_and_root_fingerprint_joined_by_dots() -> None:
    assert str(EnrollmentToken(SECRET, ROOT)) == f"fge1.{SECRET}.{ROOT}"


def test_a_token_parses_back_to_its_parts_and_a_pasted_line_end_is_forgiven() -> None:
    assert parse_enrollment_token(f"fge1.{SECRET}.{ROOT}\n") == EnrollmentToken(SECRET, ROOT)


@pytest.mark.parametrize("text", [
    "",
    f"fge2.{SECRET}.{ROOT}",               # another version
    f"fge1.{SECRET}.{ROOT.upper()}",       # the fingerprint is lower-case hex
    f"fge1.{SECRET}.{ROOT[:-1]}",          # 63 digits
    f"fge1.{'A' * 19}.{ROOT}",             # secret too short
    f"fge1.{'A' * 101}.{ROOT}",            # secret too long
    f"fge1.{'A' * 19}=.{ROOT}",            # not URL-safe base64
    f"fge1.{SECRET}.{ROOT}.extra",
    f"fge1.{SECRET} .{ROOT}",
])
def test_anything_else_is_not_a_token(text: str) -> None:
    with pytest.raises(MalformedEnrollmentTokenError) as refused:
        parse_enrollment_token(text)
    assert refused.value.code == "enrollment_token_invalid"


def test_a_response_serializes_not_after_as_iso_8601_utc() -> None:
    response = CertificateResponse(
        device_id="d", serial="1f", certificate_pem="c", chain_pem="ch", ca_bundle_pem="b",
        not_after=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert response.model_dump(mode="json")["not_after"] == "2030-01-02T03:04:05Z"
