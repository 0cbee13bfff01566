"""The mesh's TLS contexts, one rule for the sidecar's two ports and the gateway.

* TLS 1.3 only: every peer is another sidecar or the gateway, whose TLS libraries all speak
  it, and it has no renegotiation, no static RSA key exchange and no downgrade to an older
  version (OpenSSL checks its downgrade sentinel).
* A caller must present a certificate chaining to the mesh's trust bundle; so must a callee,
  when the server asks. Which identity a peer proves is checked after the handshake
  (``identity.peer_identity``): ``ssl`` checks host names only, which an identity is not.
* The standard library loads a key from a file only. On Linux each pair is written into
  anonymous memory files (``memfd_create``) and loaded through ``/proc/self/fd``, so the key
  never reaches a file system, and no writable one is needed (the sidecar's container runs
  with a read-only root file system, where ``tempfile`` finds no directory). Elsewhere it is
  written into a directory only this process's user may read, loaded, and deleted at once.
* No session tickets: callers keep connections alive rather than resume sessions, and a
  ticket arriving after the handshake would make a pooled connection look used.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile


def mesh_contexts(certificate: str, key: str, bundle: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts presenting ``certificate`` and trusting ``bundle`` only. The
    server asks for the caller's certificate without requiring one: a port that also takes
    callers with none (permissive) decides by the identity it finds. ``ssl.SSLError`` or
    ``ValueError`` when the pair does not load."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for context in (server, client):
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_verify_locations(cadata=bundle)
    load = _load_in_memory if hasattr(os, "memfd_create") else _load_from_folder
    load((server, client), certificate, key)
    server.verify_mode = ssl.CERT_OPTIONAL
    server.num_tickets = 0
    client.check_hostname = False
    client.verify_mode = ssl.CERT_REQUIRED
    return server, client


def _load_in_memory(contexts: tuple[ssl.SSLContext, ...], certificate: str, key: str) -> None:
    descriptors: list[int] = []
    try:
        for name, text in (("certificate", certificate), ("key", key)):
            descriptors.append(os.memfd_create(f"lambdamesh-{name}", os.MFD_CLOEXEC))
            with open(descriptors[-1], "w", closefd=False) as file:
                file.write(text)
        paths = [f"/proc/self/fd/{descriptor}" for descriptor in descriptors]
        for context in contexts:
            context.load_cert_chain(*paths)
    finally:
        for descriptor in descriptors:
            os.close(descriptor)


def _load_from_folder(contexts: tuple[ssl.SSLContext, ...], certificate: str, key: str) -> None:
    folder = tempfile.mkdtemp(prefix="lambdamesh-identity-")  # mode 0700
    try:
        paths = []
        for name, text in (("certificate.pem", certificate), ("key.pem", key)):
            path = os.path.join(folder, name)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(text)
            paths.append(path)
        for context in contexts:
            context.load_cert_chain(*paths)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
