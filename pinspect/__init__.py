"""pinspect: find pinned and unmigratable physical pages with drgn.

Inside a drgn session::

    import pinspect
    report = pinspect.find_pinned(prog, zone_names=["Normal"])
"""

from pinspect.cmascan import AreaReport, Blocker, CmaReport, TryResult, cma_report, try_alloc
from pinspect.kernel import probe
from pinspect.owner import OwnerRecord, OwnerReport, owner_records
from pinspect.pageview import PageVerdict, inspect_page
from pinspect.pinner import (
    PinnerLog,
    PinnerPage,
    PinnerRecord,
    PinnerReport,
    Ring,
    pinner_log,
    pinner_records,
)
from pinspect.report import PinnedPage, PinnedReport, find_pinned, zone_pins
from pinspect.stackdepot import Frame, Stack, stack_depot
from pinspect.summary import ZonePins
from pinspect.target import open_program

__version__ = "0.1.0"

__all__ = ["AreaReport", "Blocker", "CmaReport", "Frame", "OwnerRecord", "OwnerReport",
           "PageVerdict", "PinnedPage", "PinnedReport", "PinnerLog", "PinnerPage", "PinnerRecord",
           "PinnerReport", "Ring", "Stack", "TryResult", "ZonePins", "cma_report", "find_pinned",
           "inspect_page", "open_program", "owner_records", "pinner_log", "pinner_records", "probe",
           "stack_depot", "try_alloc", "zone_pins"]
