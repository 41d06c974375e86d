"""
The server's Prometheus metrics, served at ``/metrics``.

``nanomdm_http_requests_total{endpoint, message_type, status}``
    Requests answered through async_render.  ``endpoint`` is the resource
    family (``/mdm``, ``/checkin``, ``/v1/enqueue``, ``/v1/enrollments``):
    the static part of the path, never an ID; ``message_type`` is the
    check-in's MessageType, ``report:<Status>`` for a command report, empty
    elsewhere; ``status`` the HTTP status, or ``disconnected`` when the
    client left first.
``nanomdm_http_request_duration_seconds{endpoint}``
    Their latency.
``nanomdm_pushes_total{result}``
    One per enrollment pushed to: ``success``, Apple's ``reason``, or ours
    (``no_push_info``, ``no_push_cert``, ``unusable_push_cert``, ``no_answer``).
``nanomdm_webhook_deliveries_total``, ``nanomdm_webhook_retries_total``,
``nanomdm_webhook_drops_total{reason}``
    Events delivered, failed attempts tried again, and events given up.
``nanomdm_storage_errors_total{interaction}``
    Failed storage interactions (after their retry), by what they did.
``nanomdm_queue_depth``
    Commands waiting for an answer, over all enrollments, sampled every minute.

The families are created on first use, not at import: with ``--workers``
the first process must point prometheus_client at its multi-process folder
before any metric exists (processes.py).  Every label value comes from a
bounded set, so a device or API client cannot grow the series.
"""

from collections.abc import Iterable

# Seconds; MDM answers from memory take a millisecond, a slow database several.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def resource_family(root, prepath: tuple[bytes, ...]) -> tuple[str, bool]:
    """
    (endpoint label, whether it is the whole path) for a request that reached
    ``prepath``: the part of it that names static children in the resource tree
    (``putChild``), so ``/v1/enrollments/<id>`` counts as ``/v1/enrollments``.
    """
    resource, names = root, []
    for segment in prepath:
        resource = resource.getStaticEntity(segment)
        if resource is None:
            break
        names.append(segment.decode("utf-8", "replace"))
    return "/" + "/".join(names), len(names) == len(prepath)


class ServerMetrics:
    """The metric families and the few ways the server records into them."""

    def __init__(self, registry=None):
        """``registry``: prometheus_client's default one unless given (tests)."""
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        registry = REGISTRY if registry is None else registry
        self.requests = Counter(
            "nanomdm_http_requests",
            "HTTP requests answered, by endpoint, MDM message type and status.",
            ["endpoint", "message_type", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "nanomdm_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.pushes = Counter(
            "nanomdm_pushes",
            "APNs pushes by result: success, Apple's reason, or why none was sent.",
            ["result"],
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            "nanomdm_webhook_deliveries", "Webhook events delivered (2xx).", registry=registry
        )
        self.webhook_retries = Counter(
            "nanomdm_webhook_retries",
            "Failed webhook delivery attempts that were tried again.",
            registry=registry,
        )
        self.webhook_drops = Counter(
            "nanomdm_webhook_drops",
            "Webhook events given up, by reason.",
            ["reason"],
            registry=registry,
        )
        self.storage_errors = Counter(
            "nanomdm_storage_errors",
            "Storage interactions that failed (after their retry), by interaction.",
            ["interaction"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "nanomdm_queue_depth",
            "Queued commands waiting for an answer (or NotNow), over all enrollments.",
            registry=registry,
            multiprocess_mode="mostrecent",  # sampled by the first process only
        )
        # (prepath, message_type, status) -> (counter, histogram) children: a
        # request costs one dict lookup, not prometheus_client's labels().
        self._request_series: dict[tuple, tuple] = {}

    def request_answered(self, request, status: int | str, seconds: float) -> None:
        """Count one answered request; called once per request, by async_render."""
        key = (tuple(request.prepath), request.nanomdm_context.get("message_type", ""), status)
        series = self._request_series.get(key)
        if series is None:
            series = self._new_request_series(request.site.resource, key)
        series[0].inc()
        series[1].observe(seconds)

    def _new_request_series(self, root, key: tuple) -> tuple:
        prepath, message_type, status = key
        endpoint, whole = resource_family(root, prepath)
        series = (
            self.requests.labels(endpoint, message_type, str(status)),
            self.latency.labels(endpoint),
        )
        if whole:  # a path of the static tree: bounded, worth keeping
            self._request_series[key] = series
        return series

    def pushed(self, results: Iterable[str]) -> None:
        """Count one push call's results, as push/service.py labels them."""
        for result in results:
            self.pushes.labels(result).inc()


_metrics: ServerMetrics | None = None


def server_metrics() -> ServerMetrics:
    """This process's metrics, created on first use (see processes.py for why so late)."""
    global _metrics
    if _metrics is None:
        _metrics = ServerMetrics()
    return _metrics


def metrics_created() -> bool:
    return _metrics is not None
