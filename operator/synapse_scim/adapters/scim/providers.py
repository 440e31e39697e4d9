"""What serving a ScimProvider needs from Kubernetes besides its store: its bearer tokens (the values of
its Secret, re-read with a short cache so that a rotation needs no restart) and the endpoint's TLS
certificate (files mounted from a Secret, reloaded when they change). Logs name a token only by its
fingerprint: the Secret is the only place a token exists."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from synapse_scim.adapters.scim.server import fingerprint
from synapse_scim.core.reasons import Reason

log = logging.getLogger(__name__)

SECRET_NOT_FOUND = Reason.SECRET_NOT_FOUND
SECRET_NOT_READABLE = Reason.SECRET_NOT_READABLE
NO_TOKENS = Reason.NO_TOKENS


@dataclass(frozen=True)
class Problem:
    reason: Reason  # for the Ready condition
    message: str


class SecretTokens:
    """The accepted tokens of one provider: every value of its Secret, read again when the last read is
    older than `ttl` seconds. A failed read that is not a 404/403 (the API server briefly away) keeps
    the tokens read before and is retried at the next request; with none read before (a replica just
    started) it raises, so the request is answered 503 to retry, never 401: a valid token refused
    looks to an identity provider like revoked credentials (Entra ID quarantines the app on them)."""

    def __init__(
        self,
        core: client.CoreV1Api,
        namespace: str,
        secret: str,
        *,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = core
        self.namespace = namespace
        self.secret = secret
        self.ttl = ttl
        self.clock = clock
        self.tokens: list[str] = []
        self.problem: Problem | None = Problem(SECRET_NOT_FOUND, "not read yet")
        self._read_at: float | None = None
        self._lock = asyncio.Lock()
        self._fingerprints: list[str] | None = None

    def point_at(self, secret: str) -> None:
        """The provider now names another Secret: read it at the next request."""
        if secret != self.secret:
            self.secret = secret
            self._read_at = None

    async def get(self) -> list[str]:
        if self._fresh():
            return self.tokens
        async with self._lock:
            if not self._fresh():
                await self._read()
        return self.tokens

    def _fresh(self) -> bool:
        return self._read_at is not None and self.clock() - self._read_at < self.ttl

    async def _read(self) -> None:
        where = f"Secret {self.namespace}/{self.secret}"
        try:
            secret = await asyncio.to_thread(self.core.read_namespaced_secret, self.secret, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                self._set([], Problem(SECRET_NOT_FOUND, f"{where} does not exist: create it with one key per token"))
            elif exc.status == 403:
                self._set(
                    [],
                    Problem(SECRET_NOT_READABLE, f"the operator may not read {where} (403): grant it get on secrets"),
                )
            else:
                log.warning("scim: reading %s: %s %s; keeping the tokens read before", where, exc.status, exc.reason)
                if self._read_at is None:
                    raise  # none read before: nothing to keep (the request is answered 503)
                return  # _read_at unchanged: the next request reads again
        except Exception as exc:
            log.warning("scim: reading %s: %s; keeping the tokens read before", where, exc)
            if self._read_at is None:
                raise
            return
        else:
            tokens = []
            for key, value in sorted((secret.data or {}).items()):
                try:
                    token = base64.b64decode(value).decode().strip()
                except (binascii.Error, UnicodeDecodeError):
                    log.warning("scim: %s key %r is not a UTF-8 token; ignored", where, key)
                    continue
                if token:
                    tokens.append(token)
            problem = None if tokens else Problem(NO_TOKENS, f"{where} has no token: add one key per token")
            self._set(tokens, problem)
        self._read_at = self.clock()

    def _set(self, tokens: list[str], problem: Problem | None) -> None:
        self.tokens, self.problem = tokens, problem
        prints = [fingerprint(token) for token in tokens]
        if prints != self._fingerprints:
            log.info(
                "scim: provider tokens from Secret %s/%s: %s",
                self.namespace,
                self.secret,
                ", ".join(prints) if prints else f"none ({problem.reason if problem else ''})",
            )
            self._fingerprints = prints


class TLSFilesError(Exception):
    """The endpoint's certificate and key cannot be loaded at start: the message says which files."""


class ReloadingTLS:
    """A server SSLContext (TLS 1.2 at least) from a certificate and key file, loaded again when either
    file changes (checked every `interval` seconds: a mounted Secret changes by a symlink swap, which
    changes what os.stat sees). Connections made after the reload get the new certificate; a pair that
    does not load (half-written, mismatched) is logged and the previous one kept."""

    def __init__(self, cert: str, key: str, interval: float = 10.0) -> None:
        self.cert, self.key, self.interval = cert, key, interval
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            self.context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise TLSFilesError(
                f"the TLS certificate {cert} and key {key} do not load ({exc.strerror or exc}): mount a "
                "kubernetes.io/tls Secret there (tls.crt, tls.key) or set SYNAPSE_SCIM_SCIM_TLS_DIR"
            ) from None
        self._seen = self._stamp()
        self.reloads = 0

    def _stamp(self) -> tuple[tuple[int, int, int], ...]:
        out = []
        for path in (self.cert, self.key):
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_ino, st.st_size))
            except OSError:
                out.append((0, 0, 0))
        return tuple(out)

    def check(self) -> bool:
        """Load the files again if they changed: True when a new certificate was loaded."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        try:
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            log.error(
                "scim: TLS certificate %s changed but does not load (%s); keeping the previous one", self.cert, exc
            )
            return False
        finally:
            self._seen = stamp
        self.reloads += 1
        log.info("scim: TLS certificate %s reloaded", self.cert)
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()
