"""The pure core: window aggregation, feature assembly, scoring maths and metrics maths.

Nothing under this package imports Kafka, Redis or Feast, or touches the network or the disk; the
stream worker and the offline backfill both run it, which is what keeps training and serving equal.
"""
