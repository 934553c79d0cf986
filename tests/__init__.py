"""pinspect's tests (a package, so that the real-kernel harness is importable as
``tests.realkernel.harness``, by the benchmarks too)."""
