"""Offline evaluation: the paper's metrics (:mod:`.metrics`) and test-day reports (:mod:`.evaluate`)."""
