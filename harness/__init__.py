"""The harness the tests and the benchmarks share: a real samq deployment on loopback (stack.py), processes, ports
and polling (procs.py), real photographs (photos.py), a scripted webhook receiver (receiver.py) and the credit
ledger check (ledger.py). tests/ and bench/ import it; it imports neither, and it is not shipped with the service
(pyproject.toml's package list names gateway, worker and shared only)."""
