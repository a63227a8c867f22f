"""A faithful stand-in for the KIS Open API (see docs/kis-api.md): tests, the demo and benchmarks use it.

``python -m simulator`` serves it; ``simulator.testing.run_simulator`` runs it inside a test;
``simulator.market.Market`` is the deterministic market behind both. See ``simulator/README.md``.
"""
