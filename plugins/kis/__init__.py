"""Collecting KRX 1-minute bars from the KIS Open API into PostgreSQL."""
