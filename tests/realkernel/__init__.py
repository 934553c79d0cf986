"""The real-kernel test tier (README.md, Real-kernel test tier): ``harness`` boots kernels under
QEMU and dumps them (also a script: ``python3 tests/realkernel/harness.py dev``), ``rksupport``
and ``conftest`` wire it into pytest."""
