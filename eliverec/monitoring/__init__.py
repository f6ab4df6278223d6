"""Monitoring (DESIGN section 2): drift, discoverability for unpopular channels, low-activity users, dashboards.

Entry point: :func:`eliverec.monitoring.monitor.monitor_day` (``eliverec monitor --date D``);
``eliverec ui monitoring`` serves the Evidently workspace (:mod:`eliverec.monitoring.workspace`).
This package imports nothing heavy at import time (``eliverec.config`` imports :mod:`.columns`).
"""
