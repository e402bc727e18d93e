"""AMQP header names the hub sets. One place, so producers and consumers agree."""

SIGNATURE = "lt-signature"  # detached compact JWS over the body bytes
ATTEMPT = "lt-attempt"  # how many times delivery has been tried (the hub's own counter)
LAST_ERROR = "lt-last-error"  # dotted code and message of the last failure
RETURN_TO = "lt-return-to"  # the work queue a retried message goes back to
ORIGINAL_EXCHANGE = "lt-original-exchange"
ORIGINAL_ROUTING_KEY = "lt-original-routing-key"
REASON = "lt-reason"  # why a message was parked (dead letters, invalid messages)
REASON_CODE = "lt-reason-code"
PARKED_AT = "lt-parked-at"
PARKED_BY = "lt-parked-by"  # the consumer that gave up on it
HISTORY = "lt-history"  # list of {attempt, code, message, at} kept across retries
EDITED = "lt-edited"  # set when an operator edited and resubmitted a message
# Set on a copy an operator replayed or resubmitted: the id of the dead letter (the store's
# row) it came from, so that a copy failing again is parked as a new dead letter linked to it.
REPLAY_OF = "lt-replay-of"
UPSTREAM_PROOF = "lt-upstream-proof"  # the upstream system's own signature over what it sent
# Set on a message sent to a retry tier behind an earlier message of its dossier (the id of
# the message its dossier waits on): held, not failed; its lt-attempt is left as it was.
HELD_BEHIND = "lt-held-behind"
# The dossier's slot, 0-63 (hub.broker.names.slot_of its subject), set by Outgoing.signed:
# partitioned work queues are bound by it.
SLOT = "lt-slot"
