"""Ministries' subscriptions: a queue per subscription, fed by the hub's fan-out with projected
copies signed by the hub; a RabbitMQ user per ministry that may read its queues and nothing
else; the history stream and replays; the AsyncAPI document of it all.

- ``model``: a subscription, its queue names and routing patterns.
- ``access``: the ministries' access list and personal data declaration
  (``mappings/ministries.toml``) and the projections (``mappings/projections/*.toml``).
- ``records``: the subscriptions table of the store.
- ``topology``: the declarations of the feed, the history stream and each subscription.
- ``fanout``: the consumer of the feed that projects, signs and sends each ministry its copy.
- ``replay``: copies from the history stream into a subscription's queue.
- ``status``: depth, consumers, age and rate of each queue, and what to report (the users,
  permissions and statistics through ``hub.broker.management``; the age of the oldest
  message from ``hub.broker.queueage``).
- ``service``: what the command line calls (add, remove, credentials).
- ``asyncapi``: the AsyncAPI 3.0 document of the live configuration.
"""
