"""Keys for a test: the hub's own, saved and trusted as ``lienthong keys generate --trust``
leaves them, and a sender's, trusted by the hub."""

from __future__ import annotations

from hub.settings import Settings
from hub.signing import Signer, TrustStore, generate


def hub_keys(settings: Settings) -> TrustStore:
    """Make the hub's key and certificate for ``settings``, save them in its keys directory
    (where a worker and the keeper load them from) and trust the certificate in its trust
    store. The trust store is returned, for ``signer_for`` to trust senders in."""
    material = generate(settings.hub_id)
    material.save(settings.keys_dir)
    trust = TrustStore(settings.trust_dir)
    trust.add(material.certificate_pem())
    return trust


def signer_for(system_id: str, trust: TrustStore) -> Signer:
    """A fresh key and certificate for ``system_id``, trusted by ``trust``, and its signer."""
    material = generate(system_id)
    assert material.certificate is not None
    trust.add(material.certificate_pem())
    return Signer(material.private_key, material.certificate)
