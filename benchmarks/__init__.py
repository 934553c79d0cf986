"""pinspect benchmarks (issue #5): see README.md, section Performance.

``python3 -m benchmarks`` runs everything; the modules are:

* :mod:`benchmarks.synth` makes large sparse synthetic ELF vmcores with a known set of pins,
* :mod:`benchmarks.realdump` boots a large real-kernel guest with the real-kernel harness and
  dumps it,
* :mod:`benchmarks.measure` is the per-measurement worker (one subprocess each),
* :mod:`benchmarks.__main__` runs the measurements and prints the table.
"""
