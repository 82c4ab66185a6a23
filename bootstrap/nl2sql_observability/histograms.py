"""Metric Views: how each contract histogram is aggregated.

`nl2sql.node.duration` and `nl2sql.request.duration` are exponential histograms, which Prometheus 3
stores as native histograms: their buckets follow the data (at most `EXPONENTIAL_MAX_SIZE` per
series, at scale 3 or finer for any range up to 2^20, so each bucket is at most 2^(1/8), about 9 %,
wide), so a p95 lands within one such bucket of the true value. Fixed buckets that double at each
step snapped a 1 ms p95 to 8.75 ms. The GenAI histograms keep the semantic conventions' explicit
buckets (`semconv.DURATION_BUCKETS`, `semconv.TOKEN_BUCKETS`), as other GenAI dashboards expect.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)

from nl2sql_observability import semconv as sc

__all__ = ["EXPONENTIAL_HISTOGRAMS", "EXPONENTIAL_MAX_SCALE", "EXPONENTIAL_MAX_SIZE", "contract_views"]

EXPONENTIAL_HISTOGRAMS: Final = (sc.NODE_DURATION, sc.REQUEST_DURATION)
# The OTel SDK defaults: 160 buckets per series; the scale starts at 20 and drops only as far as the
# observed range needs (Prometheus keeps at most scale 8, finer than 9 % at any scale >= 3).
EXPONENTIAL_MAX_SIZE: Final = 160
EXPONENTIAL_MAX_SCALE: Final = 20


def contract_views() -> list[View]:
    """One View per contract histogram: exponential for node and request durations, the explicit
    contract buckets for the GenAI duration and token histograms."""
    exponential = ExponentialBucketHistogramAggregation(
        max_size=EXPONENTIAL_MAX_SIZE, max_scale=EXPONENTIAL_MAX_SCALE
    )
    durations = ExplicitBucketHistogramAggregation(boundaries=sc.DURATION_BUCKETS)
    tokens = ExplicitBucketHistogramAggregation(boundaries=sc.TOKEN_BUCKETS)
    views = [View(instrument_name=name, aggregation=exponential) for name in EXPONENTIAL_HISTOGRAMS]
    views += [
        View(instrument_name=name, aggregation=durations)
        for name in sc.DURATION_METRICS
        if name not in EXPONENTIAL_HISTOGRAMS
    ]
    views += [View(instrument_name=name, aggregation=tokens) for name in sc.TOKEN_HISTOGRAMS]
    return views
