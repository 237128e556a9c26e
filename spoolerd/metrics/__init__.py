"""Prometheus metrics (``[metrics] address``): the queue census, the collector, the HTTP exposition.

``settings`` is imported by the configuration; the rest only when a daemon serves metrics.
"""
