"""The outbox relay: publishes with confirms what the doors kept in the store's outbox, and
marks it published only once the broker confirmed it (``relay``). Not part of the HTTP layer:
it talks to the store and the broker only, and runs wherever rows are kept (today one per
``lienthong serve`` process, started with the app)."""
