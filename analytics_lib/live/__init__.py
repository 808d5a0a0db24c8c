"""Live data: the live payment simulator, watch-folder ingestion, anomaly detection and alerts.

* :mod:`analytics_lib.live.simulate` appends realistic new payments to the warehouse in small
  batches (``payment-analytics simulate --live``);
* :mod:`analytics_lib.live.watch` loads files dropped into a folder (``payment-analytics ingest
  --watch DIR``);
* :mod:`analytics_lib.live.anomalies` detects anomalies in the live window and records them in
  the ``anomaly_alerts`` table; :mod:`analytics_lib.live.stats` holds its statistical tests.

docs/live.md describes how live mode works, the rules and their thresholds, and measured costs.
"""
