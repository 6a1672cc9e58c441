"""The catalog: one entry per variant (SKU), upserted by catalog.update, and its validation.

SPEC 2: every variant is upserted (SKU is the immutable key); a group with
`is_active=false` makes its SKUs unsellable for web orders.

Choices where SPEC is silent:
- An update older (by event timestamp) than the entry it would replace does not win;
  one with the same timestamp does (last by arrival).
- A variant's `stock_quantity` is applied as an absolute count whatever the age of the
  entry (the stock has its own rule for stale counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .pricing import CatalogItem
from .serde import Plain

__all__ = ["CatalogEntry", "validate_catalog_update"]


@dataclass(frozen=True, slots=True)
class CatalogEntry(Plain):
    """One variant as the catalog table keeps it (`<tenant>:<sku>`)."""

    tenant_id: str
    sku: str
    product_group_id: str
    group_name: str
    display_name: str
    price: Decimal
    updated_at: int  # the update's event timestamp, epoch millis
    event_id: str
    mrp: Decimal | None = None
    tax_rate: Decimal | None = None  # percent, from the product group
    is_active: bool = True
    tax_hsn: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    def item(self) -> CatalogItem:
        """What pricing and the order checks need."""
        return CatalogItem(self.sku, self.price, self.tax_rate, self.is_active)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id, "sku": self.sku, "product_group_id": self.product_group_id,
            "group_name": self.group_name, "display_name": self.display_name, "price": format(self.price, "f"),
            "mrp": None if self.mrp is None else format(self.mrp, "f"),
            "tax_rate": None if self.tax_rate is None else format(self.tax_rate, "f"),
            "is_active": self.is_active, "tax_hsn": self.tax_hsn, "attributes": dict(self.attributes),
            "updated_at": self.updated_at, "event_id": self.event_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CatalogEntry:
        mrp, tax = data.get("mrp"), data.get("tax_rate")
        return cls(
            data["tenant_id"], data["sku"], data["product_group_id"], data["group_name"], data["display_name"],
            Decimal(data["price"]), data["updated_at"], data["event_id"], None if mrp is None else Decimal(mrp),
            None if tax is None else Decimal(tax), data.get("is_active", True), data.get("tax_hsn"),
            dict(data.get("attributes") or {}),
        )

    @classmethod
    def from_variant(cls, tenant_id: str, group: Mapping[str, Any], variant: Mapping[str, Any], updated_at: int,
                     event_id: str) -> CatalogEntry:
        """From a catalog.update's `data` (the group) and one of its variants; validate first."""
        mrp, tax = variant.get("mrp"), group.get("tax_rate")
        return cls(
            tenant_id, variant["sku"], group["product_group_id"], group["group_name"], variant["display_name"],
            Decimal(variant["price"]), updated_at, event_id, None if mrp is None else Decimal(mrp),
            None if tax is None else Decimal(tax), bool(group.get("is_active", True)), group.get("tax_hsn"),
            dict(variant.get("attributes") or {}),
        )


def validate_catalog_update(data: Mapping[str, Any]) -> list[str]:
    """Readable reasons why a catalog.update `data` breaks the rules; empty when valid."""
    reasons = []
    if not data.get("product_group_id"):
        reasons.append("product_group_id is missing or empty")
    variants = data.get("variants") or []
    if not variants:
        reasons.append("a product group needs at least one variant")
    seen: set[str] = set()
    for n, v in enumerate(variants):
        sku = v.get("sku")
        if not sku:
            reasons.append(f"variants[{n}].sku is missing or empty")
        elif sku in seen:
            reasons.append(f"variants[{n}].sku {sku} appears twice")
        seen.add(sku)
        if v.get("price") is not None and v["price"] < 0:
            reasons.append(f"variants[{n}].price must not be negative")
        if v.get("stock_quantity") is not None and v["stock_quantity"] < 0:
            reasons.append(f"variants[{n}].stock_quantity must not be negative")
    if data.get("tax_rate") is not None and not (0 <= data["tax_rate"] <= 100):
        reasons.append("tax_rate must be between 0 and 100")
    return reasons
