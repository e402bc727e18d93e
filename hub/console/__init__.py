"""The operator console: dead letters kept as they arrive (``keeper``), browsed, inspected,
replayed, edited and discarded (``service``), every action in the hash-chained audit trail;
operators with roles and sessions (``accounts``); served as an API, a CLI and a web page."""
