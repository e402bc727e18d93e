"""Message signatures: detached JWS over the body bytes (``jws``), the keys and certificates
that make them (``keys``), the certificates the hub trusts (``truststore``), and the checks a
receiver applies (``verifier``, ``replay``)."""

from hub.signing.algorithms import ALGORITHMS
from hub.signing.jws import Signer, load_signer
from hub.signing.keys import KeyFiles, KeyMaterial, generate, kid_of
from hub.signing.replay import DuplicateMessage, ReplayCache
from hub.signing.truststore import TrustedKey, TrustStore
from hub.signing.verifier import Verifier

__all__ = [
    "ALGORITHMS",
    "DuplicateMessage",
    "KeyFiles",
    "KeyMaterial",
    "ReplayCache",
    "Signer",
    "TrustStore",
    "TrustedKey",
    "Verifier",
    "generate",
    "kid_of",
    "load_signer",
]
