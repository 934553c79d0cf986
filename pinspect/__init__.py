"""pinspect: find pinned and unmigratable physical pages with drgn.

Inside a drgn session::

    import pinspect
    report = pinspect.find_pinned(prog, zones=["Normal"])
"""

__version__ = "0.1.0"
