"""page_owner: the page_ext client that records who allocated each page."""

from __future__ import annotations

from pinspect.features import ABSENT, OFF, PRESENT, Feature
from pinspect.pageext import ClientSpec, PageExtLayout

CLIENT = ClientSpec(
    name="page_owner",
    ops="page_owner_ops",
    enabled_key="page_owner_inited",
    wants_flags=lambda client: client.need_shared_flags,
)


def owner_feature(page_ext: PageExtLayout | None) -> Feature:
    """Whether page_owner is compiled in and enabled."""
    client = page_ext.client(CLIENT.name) if page_ext is not None else None
    if client is None:
        return Feature("page_owner", ABSENT, "kernel built without CONFIG_PAGE_OWNER")
    if client.enabled:
        return Feature("page_owner", PRESENT, "enabled at boot (page_owner=on)")
    return Feature("page_owner", OFF, "compiled in but not enabled; boot with page_owner=on")
