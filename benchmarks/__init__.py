"""pinspect benchmarks (issue #5): see README.md, section Performance.

``python3 -m benchmarks`` runs everything; the modules are:

* :mod:`benchmarks.synth` makes large sparse synthetic ELF vmcores with a known set of pins,
* :mod:`benchmarks.realdump` boots a large real-kernel guest with the real-kernel harness and
  dumps it,
* :mod:`benchmarks.measure` is the per-measurement worker (one subprocess each),
* :mod:`benchmarks.__main__` runs the measurements and prints the table;
* :mod:`benchmarks.manypins` boots cma61 with ``cma=4G`` and runs ``benchwork.c`` (50 processes
  pinning 2000 pages each, page_owner on) and dumps it; :mod:`benchmarks.commands` times
  ``pinned``, ``pinned --stacks``, ``stacks``, ``pinned --owners`` and ``cma`` on that dump,
  and (``--startup``) start-up with BTF against DWARF.
"""
