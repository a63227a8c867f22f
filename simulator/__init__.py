"""A faithful stand-in for the KIS Open API (see docs/kis-api.md): tests, the demo and benchmarks use it.

``python -m simulator`` serves it; ``simulator.testing.run_simulator`` runs it inside a test;
``simulator.market.Market`` is the deterministic market behind both, trading in the sessions of
``simulator.sessions``. See ``simulator/README.md``.

Of the collector's package it shares only the record of a bar (``kis.bar.Bar``, with ``KST``: what
the truth API serves and the tests compare with what was stored) and the venues' names
(``kis.venues.Venue``), two modules that import nothing; never its logic, least of all its calendar,
which the simulator's sessions are the independent check of.
"""
