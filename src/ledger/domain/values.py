"""Validation of the input values every command shares (identifiers, wallets, codes, integers).

These checks run before any business rule, so a malformed value is always a
`validation_error`, whatever else is wrong with the command.
"""

from __future__ import annotations

import functools
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pycountry
from eth_utils.address import is_hex_address, to_checksum_address

from ledger.errors import ValidationError

ASSET_ID = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,31}$")
INVESTOR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAMESPACE = uuid.UUID("6f1d3c1e-5d0b-4c59-9f0e-7a4f1e0c2b11")


def stream_id(kind: str, key: str) -> uuid.UUID:
    """The stable aggregate id of a naturally keyed aggregate (asset, investor, wallet)."""
    return uuid.uuid5(NAMESPACE, f"{kind}:{key}")


@functools.lru_cache(maxsize=65_536)
def held_stream_id(kind: str, key: str) -> uuid.UUID:
    """`stream_id` of the aggregates every command looks up again and again (assets,
    investors), remembered: a uuid5 costs a SHA-1 and a UUID object each time."""
    return stream_id(kind, key)


def asset_id(value: Any) -> str:
    if not isinstance(value, str) or not ASSET_ID.fullmatch(value):
        raise ValidationError(f"asset_id must match {ASSET_ID.pattern}")
    return value


def investor_id(value: Any) -> str:
    if not isinstance(value, str) or not INVESTOR_ID.fullmatch(value):
        raise ValidationError(f"investor_id must match {INVESTOR_ID.pattern}")
    return value


def uuid_text(value: Any, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ValidationError(f"{field} must be a UUID") from None


def wallet(value: Any, field: str = "wallet") -> str:
    """An EVM address, returned EIP-55 checksummed."""
    if not isinstance(value, str) or not is_hex_address(value):
        raise ValidationError(f"{field} must be a 0x-prefixed 20-byte hex address")
    return str(to_checksum_address(value))


def country(value: Any, field: str = "country") -> str:
    if (
        not isinstance(value, str)
        or not re.fullmatch(r"[A-Z]{2}", value)
        or pycountry.countries.get(alpha_2=value) is None
    ):
        raise ValidationError(f"{field} must be an ISO 3166-1 alpha-2 code, got {value!r}")
    return value


def currency(value: Any) -> str:
    if (
        not isinstance(value, str)
        or not re.fullmatch(r"[A-Z]{3}", value)
        or pycountry.currencies.get(alpha_3=value) is None
    ):
        raise ValidationError(f"currency must be an ISO 4217 code, got {value!r}")
    return value


def integer(value: Any, field: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An exact integer: a JSON integer or a string of digits (never a float or a bool)."""
    if isinstance(value, bool):
        raise ValidationError(f"{field} must be an integer")
    if isinstance(value, str):
        text = value[1:] if value.startswith("-") else value
        if not text.isascii() or not text.isdigit() or len(text) > 80:
            raise ValidationError(f"{field} must be an integer or a string of digits")
        value = int(value)
    if not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer")
    if minimum is not None and value < minimum:
        raise ValidationError(f"{field} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ValidationError(f"{field} must be at most {maximum}")
    return value


def text(value: Any, field: str, *, max_length: int = 200) -> str:
    """Printable Unicode text: no NUL, no lone surrogates (neither can be stored)."""
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise ValidationError(f"{field} must be a non-empty string of at most {max_length} characters")
    if "\x00" in value:
        raise ValidationError(f"{field} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{field} must be valid Unicode text") from None
    return value


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{field} must be true or false")
    return value


def timestamp(value: Any, field: str) -> datetime:
    """An RFC 3339 timestamp with an offset, normalised to UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(f"{field} must be an RFC 3339 timestamp") from None
    else:
        raise ValidationError(f"{field} must be an RFC 3339 timestamp")
    if parsed.tzinfo is None:
        raise ValidationError(f"{field} must carry a UTC offset")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValidationError(f"{field} is out of range") from None
