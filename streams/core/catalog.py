"""The catalog: one entry per variant (SKU), upserted by catalog.update, and its validation.

SPEC 2: every variant is upserted (SKU is the immutable key); a group with
`is_active=false` makes its SKUs unsellable for web orders.

Choices where SPEC is silent:
- An update older (by event timestamp) than the entry it would replace does not win;
  one with the same timestamp does (last by arrival).
- A variant's `stock_quantity` is applied as an absolute count whatever the age of the
  entry (the stock has its own rule for stale counts).

The whole group (issue 20): `ProductGroup` is the newest catalog.update of a product group as the
fold keeps it (table `groups`, `<tenant>:<product_group_id>`): the group's fields (name, description,
category_hierarchy, tax_hsn, is_active, tax_rate) and every variant with price, mrp, attributes and
media, bounded by stockledger.bounds (CATALOG_OUT_OF_RANGE at admit). `version` counts the changes of
the group's content (1 for the first); an update that changes nothing visible keeps the version (its
timestamp and event id are still recorded, so an older update arriving later does not win) and emits
nothing. Each new version is emitted on `catalog.groups` (compacted, key `<tenant>:<product_group_id>`).
A variant's `stock_quantity` is not part of the group (it is stock: stock.levels). A variant left out of
a newer version of its group keeps its catalog entry (SKUs are never deleted; SPEC 2 upserts them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .pricing import CatalogItem
from .serde import Plain

__all__ = ["CatalogEntry", "GroupVariant", "Media", "ProductGroup", "validate_catalog_update"]


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


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


@dataclass(frozen=True, slots=True)
class Media:
    url: str
    is_main: bool = False


@dataclass(frozen=True, slots=True)
class GroupVariant:
    """One variant as its group shows it (no stock: that is stock.levels)."""

    sku: str
    display_name: str
    price: Decimal
    mrp: Decimal | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    media: tuple[Media, ...] = ()


@dataclass(frozen=True, slots=True)
class ProductGroup:
    """A product group's newest version (the `groups` table; the `catalog.groups` output)."""

    tenant_id: str
    product_group_id: str
    group_name: str
    version: int  # 1, 2, ...: one more for each change of the content
    updated_at: int  # the newest applied update's event timestamp, epoch millis
    event_id: str  # that update's event id
    description: str | None = None
    category_hierarchy: tuple[str, ...] = ()
    tax_hsn: str | None = None
    is_active: bool = True
    tax_rate: Decimal | None = None
    variants: tuple[GroupVariant, ...] = ()

    def content(self) -> tuple:
        """What a web store sees; a change of it makes a new version."""
        return (self.group_name, self.description, self.category_hierarchy, self.tax_hsn, self.is_active,
                self.tax_rate, tuple((v.sku, v.display_name, v.price, v.mrp, tuple(sorted(v.attributes.items())),
                                      v.media) for v in self.variants))

    @classmethod
    def from_event(cls, tenant_id: str, data: Mapping[str, Any], updated_at: int, event_id: str,
                   version: int) -> ProductGroup:
        """From a validated catalog.update `data`."""
        return cls(
            tenant_id, data["product_group_id"], data["group_name"], version, updated_at, event_id,
            data.get("description"), tuple(data.get("category_hierarchy") or ()), data.get("tax_hsn"),
            bool(data.get("is_active", True)), _dec(data.get("tax_rate")),
            tuple(GroupVariant(v["sku"], v["display_name"], Decimal(v["price"]), _dec(v.get("mrp")),
                               dict(v.get("attributes") or {}),
                               tuple(Media(m["url"], bool(m.get("is_main", False))) for m in v.get("media") or ()))
                  for v in data["variants"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id, "product_group_id": self.product_group_id, "group_name": self.group_name,
            "version": self.version, "updated_at": self.updated_at, "event_id": self.event_id,
            "description": self.description, "category_hierarchy": list(self.category_hierarchy),
            "tax_hsn": self.tax_hsn, "is_active": self.is_active, "tax_rate": _text(self.tax_rate),
            "variants": [{"sku": v.sku, "display_name": v.display_name, "price": format(v.price, "f"),
                          "mrp": _text(v.mrp), "attributes": dict(v.attributes),
                          "media": [{"url": m.url, "is_main": m.is_main} for m in v.media]} for v in self.variants],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProductGroup:
        return cls(
            data["tenant_id"], data["product_group_id"], data["group_name"], data["version"], data["updated_at"],
            data["event_id"], data.get("description"), tuple(data.get("category_hierarchy") or ()),
            data.get("tax_hsn"), data.get("is_active", True), _dec(data.get("tax_rate")),
            tuple(GroupVariant(v["sku"], v["display_name"], Decimal(v["price"]), _dec(v.get("mrp")),
                               dict(v.get("attributes") or {}),
                               tuple(Media(m["url"], m.get("is_main", False)) for m in v.get("media") or ()))
                  for v in data.get("variants") or ()),
        )

    def datum(self) -> dict[str, Any]:
        """The catalog.groups record (stockledger/schemas/catalog_group.avsc)."""
        return {
            "tenant_id": self.tenant_id, "product_group_id": self.product_group_id, "version": self.version,
            "updated_at": self.updated_at, "event_id": self.event_id, "group_name": self.group_name,
            "description": self.description, "category_hierarchy": list(self.category_hierarchy),
            "tax_hsn": self.tax_hsn, "is_active": self.is_active, "tax_rate": self.tax_rate,
            "variants": [{"sku": v.sku, "display_name": v.display_name, "price": v.price, "mrp": v.mrp,
                          "attributes": dict(v.attributes),
                          "media": [{"url": m.url, "is_main": m.is_main} for m in v.media]} for v in self.variants],
        }


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
