"""Summaries of pinned pages: counts per evidence kind, per zone, per migratetype."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pinspect.evidence import EVIDENCE_KINDS
from pinspect.zones import Zone

if TYPE_CHECKING:
    from pinspect.report import PinnedPage


def summarize(pages: Sequence[PinnedPage]) -> dict[str, object]:
    """Counts in base pages per evidence kind and per zone, and the number of folios."""
    by_evidence: Counter[str] = Counter()
    by_zone: Counter[str] = Counter()
    total = 0
    for page in pages:
        total += page.nr_pages
        by_zone[f"{page.node}:{page.zone}"] += page.nr_pages
        for kind in page.evidence:
            by_evidence[kind] += page.nr_pages
    return {
        "pages": total,
        "folios": len(pages),
        "by_evidence": {k: by_evidence.get(k, 0) for k in EVIDENCE_KINDS},
        "by_zone": dict(sorted(by_zone.items())),
    }


@dataclass
class ZonePins:
    """A zone (``struct zone``) with its pinned pages counted, in base pages."""

    zone: Zone  # the zone's span and counters
    foll_pin: int  # pages pinned with FOLL_PIN
    extra: int  # pages with extra references
    pinner: int  # pages flagged by page_pinner
    total: int  # pinned pages, each counted once (a page can have several kinds)
    in_movable: int  # of those, in MIGRATE_MOVABLE pageblocks
    in_cma: int  # of those, in MIGRATE_CMA pageblocks


def zone_counts(zone: Zone, pages: Sequence[PinnedPage]) -> ZonePins:
    """The pinned pages of *pages* that lie in *zone*, counted in base pages."""
    mine = [p for p in pages if p.node == zone.node and p.zone == zone.name]
    return ZonePins(
        zone=zone,
        foll_pin=sum(p.nr_pages for p in mine if "foll_pin" in p.evidence),
        extra=sum(p.nr_pages for p in mine if "extra" in p.evidence),
        pinner=sum(p.nr_pages for p in mine if "pinner" in p.evidence),
        total=sum(p.nr_pages for p in mine),
        in_movable=sum(p.nr_pages for p in mine if p.migratetype == "Movable"),
        in_cma=sum(p.nr_pages for p in mine if p.migratetype == "CMA"),
    )
