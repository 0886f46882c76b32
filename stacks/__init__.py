"""Typed per-cloud compositions, their config model and the offline render engine."""
