"""prebake's benchmarks, and the fault trials that tests/faults runs with small counts (benchmarks/trials/)."""
