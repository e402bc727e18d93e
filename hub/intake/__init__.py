"""The intake: the rules of accepting what comes in at any door, whichever protocol carried it.

The REST and SOAP routes (``hub.api``) and the callbacks of external systems only parse HTTP,
authenticate the caller and answer; what makes a submission accepted lives here, in modules
named for what they hold:

- ``service``: ``IntakeService``, what every door calls (``verify_request``, ``accept``,
  ``accept_async``, ``accept_envelopes``);
- ``access``: what an authenticated client may send (its access list);
- ``idempotency``: a request sent again is answered as the first time (the client's key, and
  the key of a signed request's signed content);
- ``facts``, ``drafts``: what an event body says, and the signed envelope it becomes;
- ``writer``, ``batch``, ``jobs``, ``writelock``: the group-commit writer and its transaction;
- ``envelopes``: what a system's callback made, kept the same way;
- ``tables``, ``sequencing``: the intake's tables, and every dossier's one sequence (adapters'
  events take their numbers from the same rows);
- ``errors``: the intake's own refusals.

What is kept goes out through the outbox (``hub.outbox``).
"""
