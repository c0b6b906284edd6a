"""The monitoring service: inference records, metrics, unusual outputs, drift, alerts and policies."""
