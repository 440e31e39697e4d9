"""List-then-watch of custom objects in a daemon thread, handing each listing and event to the event
loop: the index of the SCIM store (kube_store.py) and the ScimProviders (providers.py) are fed this way.

The kubernetes client is synchronous and its watch blocks on a socket read; a daemon thread per watch
keeps it off the event loop and never holds the process's exit (the default executor would: asyncio.run
waits for its threads). A watch that ends (its timeout) resumes from the last resourceVersion seen; one
that lost track (410 Gone) or failed lists again."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, cast

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

GROUP = "synapse-scim.io"
VERSION = "v1alpha1"
LIST_PAGE = 500
RETRY_PAUSE = 2.0

log = logging.getLogger(__name__)


def _key(obj: dict[str, Any]) -> str:
    return f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"


class Watcher:
    """`on_event(type, object)` for each object listed (ADDED) and each ADDED, MODIFIED or DELETED event;
    `on_listing(names, resourceVersion)` once a full listing is in (what it lacks is gone); both called
    in the event loop that called start(). Names are `namespace/name` when watching every namespace."""

    def __init__(
        self,
        custom: client.CustomObjectsApi,
        plural: str,
        namespace: str | None,
        selector: str | None,
        on_listing: Callable[[set[str], str], None],
        on_event: Callable[[str, dict[str, Any]], None],
        *,
        timeout: int = 240,
    ) -> None:
        self.custom = custom
        self.plural = plural
        self.namespace = namespace
        self.selector = selector
        self.on_listing = on_listing
        self.on_event = on_event
        self.timeout = timeout
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        where = self.namespace or "all"
        threading.Thread(target=self._run, name=f"watch-{where}-{self.plural}", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def _post(self, method: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or self._stopping.is_set():
            return
        try:
            loop.call_soon_threadsafe(method, *args)
        except RuntimeError:  # the loop is closed: the process is ending
            self._stopping.set()

    def _list_call(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if self.namespace is None:
            return self.custom.list_cluster_custom_object, (GROUP, VERSION, self.plural)
        return self.custom.list_namespaced_custom_object, (GROUP, VERSION, self.namespace, self.plural)

    def _kwargs(self) -> dict[str, Any]:
        return {"label_selector": self.selector} if self.selector else {}

    def _list_all(self) -> tuple[set[str], str]:
        """List page by page, handing each page's objects over as ADDED events as it arrives (a whole
        listing of 50,000 objects with their managedFields is never held at once); returns the names
        listed and the listing's resourceVersion."""
        call, args = self._list_call()
        names: set[str] = set()
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {**self._kwargs(), "limit": LIST_PAGE}
            if token:
                kwargs["_continue"] = token
            page = cast(dict[str, Any], call(*args, **kwargs))
            items = page.get("items") or []
            for obj in items:
                names.add(str(obj["metadata"]["name"]) if self.namespace else _key(obj))
            self._post(self._deliver, items)
            metadata = page.get("metadata") or {}
            del page, items
            token = metadata.get("continue")
            if not token:
                return names, str(metadata.get("resourceVersion") or "")

    def _deliver(self, items: list[dict[str, Any]]) -> None:
        for obj in items:
            self.on_event("ADDED", obj)

    def _run(self) -> None:
        resource_version = ""
        call, args = self._list_call()
        while not self._stopping.is_set():
            try:
                if not resource_version:
                    names, resource_version = self._list_all()
                    self._post(self.on_listing, names, resource_version)
                stream = watch.Watch()  # type: ignore[no-untyped-call]
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    call,
                    *args,
                    **self._kwargs(),
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self.timeout,
                    _request_timeout=self.timeout + 30,
                ):
                    if self._stopping.is_set():
                        stream.stop()  # type: ignore[no-untyped-call]
                        return
                    obj = event.get("object")
                    if not isinstance(obj, dict):
                        continue
                    version = (obj.get("metadata") or {}).get("resourceVersion")
                    if version:
                        resource_version = str(version)
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        self._post(self.on_event, str(event["type"]), obj)
            except ApiException as exc:
                resource_version = ""  # list again
                if exc.status == 410 or self._stopping.is_set():
                    continue
                log.warning(
                    "watching %s in %s: %s %s", self.plural, self.namespace or "all namespaces", exc.status, exc.reason
                )
                self._stopping.wait(RETRY_PAUSE)
            except Exception as exc:  # the API server unreachable, a dropped connection
                resource_version = ""
                if self._stopping.is_set():
                    return
                log.warning("watching %s in %s: %s", self.plural, self.namespace or "all namespaces", exc)
                self._stopping.wait(RETRY_PAUSE)
