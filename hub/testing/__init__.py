"""What tests, the demo and the benchmarks use to drive the hub, and a deployment never runs.

Nothing outside this package imports it (``tests/test_testing_apart.py`` checks): a worker or
a server in production loads none of it. It ships in the wheel because the demo runs from an
installed wheel too (``python -m demo`` signs its SOAP calls with ``soap.SigningPlugin``), and
because an adapter written outside this repository tests itself with the same helpers.

Modules:
``adapters`` an adapter's context pointed at a simulator with a call policy that fails fast
    (``quick_context``);
``broker``   queues looked at from outside (``read_all``, ``depth``), a consumer run from
    synchronous code (``consuming``), the topology of a test's own destinations declared
    (``declared_topology``), sample envelopes;
``keys``     the hub's own key saved and trusted (``hub_keys``), a sender's trusted
    (``signer_for``);
``processes`` a hub server run as a process of its own, ready when its /readyz says so
    (``serving``);
``store``    an empty store of a test's own beside a shared database (``scratch_url``);
``waiting``  waiting for a condition with a deadline, from synchronous code (``wait_for``) or on
    an event loop (``eventually``): tests, the demo and the benchmarks never sleep to wait;
``soap``     the client side of the hub's SOAP signatures, as a zeep plugin (``SigningPlugin``).
"""
