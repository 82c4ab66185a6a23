"""Exporter wrappers that scrub telemetry before any exporter sees it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, Status
from opentelemetry.util import types

from nl2sql_observability.context import is_valid_tenant_id
from nl2sql_observability.semconv import TENANT_ID


def _scrub_attr_value(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value):
        return tuple(scrub(v) if isinstance(v, str) else v for v in value)
    return value


def _scrub_attributes(
    attrs: types.Attributes, scrub: Callable[[str], str], dropped: int = 0
) -> types.Attributes:
    """Return `attrs` itself when nothing changes (the cheap, common case), else a scrubbed copy."""
    if not attrs:
        return attrs
    changed: dict[str, Any] | None = None
    for key, value in attrs.items():
        if key == TENANT_ID and is_valid_tenant_id(value):
            continue  # a tenant id the contract allows is a metric label as it is: never scrubbed
        new = _scrub_attr_value(value, scrub)
        if new is not value and new != value:
            if changed is None:
                changed = {}
            changed[key] = new
    if changed is None:
        return attrs
    merged = {k: changed.get(k, v) for k, v in attrs.items()}
    copy = BoundedAttributes(maxlen=None, attributes=merged, immutable=True)
    copy.dropped = dropped or getattr(attrs, "dropped", 0)
    return copy


def scrub_span(span: ReadableSpan, scrub: Callable[[str], str]) -> ReadableSpan:
    """A scrubbed copy of `span`, or `span` itself when it holds nothing to scrub."""
    name = scrub(span.name)
    original_attributes = span.attributes  # a new read-only proxy on every access: read once
    attributes = _scrub_attributes(original_attributes, scrub, span.dropped_attributes)
    events: Sequence[Event] = span.events
    new_events: list[Event] | None = None
    for i, event in enumerate(events):
        ev_attrs = _scrub_attributes(event.attributes, scrub)
        ev_name = scrub(event.name)
        if ev_attrs is not event.attributes or ev_name != event.name:
            if new_events is None:
                new_events = list(events[:i])
            new_events.append(Event(ev_name, ev_attrs, event.timestamp))
        elif new_events is not None:
            new_events.append(event)
    links: Sequence[Link] = span.links
    new_links: list[Link] | None = None
    for i, link in enumerate(links):
        link_attrs = _scrub_attributes(link.attributes, scrub)
        if link_attrs is not link.attributes:
            if new_links is None:
                new_links = list(links[:i])
            new_links.append(Link(link.context, link_attrs))
        elif new_links is not None:
            new_links.append(link)
    status = span.status
    if status.description:
        description = scrub(status.description)
        if description != status.description:
            status = Status(status.status_code, description)
    if (
        name == span.name
        and attributes is original_attributes
        and new_events is None
        and new_links is None
        and status is span.status
    ):
        return span
    if attributes is original_attributes and original_attributes is not None:
        kept = BoundedAttributes(maxlen=None, attributes=dict(original_attributes), immutable=True)
        kept.dropped = span.dropped_attributes
        attributes = kept
    bounded_events: BoundedList[Event] = BoundedList(None)  # keeps `dropped_events` in the copy
    bounded_events.extend(new_events if new_events is not None else events)
    bounded_events.dropped = span.dropped_events
    bounded_links: BoundedList[Link] = BoundedList(None)
    bounded_links.extend(new_links if new_links is not None else links)
    bounded_links.dropped = span.dropped_links
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=bounded_events,
        links=bounded_links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class ScrubbingSpanExporter(SpanExporter):
    """Wraps an exporter so that span names, attributes (strings and sequences of strings), event and
    link attributes (e.g. `exception.message`, `exception.stacktrace`) and status descriptions are
    scrubbed before it sees them. Spans are copied only when something changes."""

    def __init__(self, inner: SpanExporter, scrub: Callable[[str], str] | None = None) -> None:
        self._inner = inner
        self._scrub = scrub

    @property
    def inner(self) -> SpanExporter:
        return self._inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._scrub is not None:
            scrub = self._scrub
        else:
            from nl2sql_observability.scrubbing import scrub_capped

            scrub = scrub_capped  # scrubbed, then cut: one huge attribute costs bounded time
        return self._inner.export([scrub_span(span, scrub) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
