"""The hub's entry points for upstream systems: REST (FastAPI, this package) and SOAP
(``hub.api.soap``). Both authenticate the caller (``auth``), verify its signature, and hand the
event to the intake service (``intake``), which keeps it in the outbox before answering; the
outbox relay (``relay``) then publishes it with confirms."""
