"""The hub's HTTP entry points for upstream systems: REST (FastAPI, this package) and SOAP
(``hub.api.soap``). They parse requests, authenticate the caller (``auth``), verify its
signature, hand the event to the intake service (``hub.intake``), which keeps it in the outbox
before answering, and build the answer; the outbox relay (``hub.outbox``) then publishes it with
confirms."""
