"""pinspect: find pinned and unmigratable physical pages with drgn.

Inside a drgn session::

    import pinspect
    report = pinspect.find_pinned(prog, zone_names=["Normal"])
"""

from pinspect.kernel import probe
from pinspect.pins import PinnedPage, PinnedReport, find_pinned, inspect_page, zone_pins
from pinspect.target import open_program

__version__ = "0.1.0"

__all__ = ["PinnedPage", "PinnedReport", "find_pinned", "inspect_page", "open_program", "probe",
           "zone_pins"]
