"""Monitoring (DESIGN section 2): drift, discoverability for unpopular channels, low-activity users, dashboards.

Entry point: :func:`eliverec.monitoring.monitor.monitor_day` (``eliverec monitor --date D``);
``eliverec ui monitoring`` serves the Evidently workspace (:mod:`eliverec.monitoring.workspace`).
The monitored columns are named in :mod:`eliverec.config` (``monitor.column_thresholds`` is checked against them).
"""
