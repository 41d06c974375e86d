"""
``/v1/enrollments``: who is enrolled, as NanoMDM lists it and with our details.

``POST /v1/enrollments`` is NanoMDM's query (a JSON filter, limit and
offset or cursor); ``GET /v1/enrollments?...`` is the same list filtered by
query parameters with our fields added, and ``GET /v1/enrollments/{id}``
one enrollment with its user channels.
"""

from twisted.web.resource import Resource
from twisted.web.server import Request

from ..errors import MessageError
from ..storage.inspection import EnrollmentFilter, EnrollmentRecord, IInspectionStore
from .body import read_body
from .jsonio import (
    ZERO_TIME,
    b64,
    decode_json,
    json_body,
    json_error,
    optional_bool,
    optional_object,
    rfc3339,
    string_list,
)
from .pagination import ENROLLMENTS, MAX_LIMIT, QueryArgs, parse_page
from .paths import path_text
from .render import async_render

QUERY = "enrollments query"
# What storage adds to a listing on request, by the names storage and clients use.
OPTIONS = ("include_device_cert", "include_unlock_token")
# Values in one query's filter lists: each is a bound parameter of one statement,
# and databases cap those (SQLite at 32,766).
MAX_FILTER_VALUES = 10_000
_LIST_PARAMETERS = (
    "id", "type", "enabled", "serial_number", "topic", "user_id", "device_id",
    "user_short_name", "limit", "cursor", "offset", *OPTIONS,
)  # fmt: skip


def enrollment_item(record: EnrollmentRecord) -> dict:
    """NanoMDM's EnrollmentJson: its field names, order and omitempty."""
    device: dict = {}
    if record.serial_number:
        device["serial_number"] = record.serial_number
    if record.device_cert:
        device["device_cert"] = record.device_cert
    if record.unlock_token:
        device["unlock_token"] = b64(record.unlock_token)
    item = {"id": record.id, "type": record.type, "device": device}
    user = {}
    if record.user_short_name:
        user["user_short_name"] = record.user_short_name
    if record.user_long_name:
        user["user_long_name"] = record.user_long_name
    if user:
        item["user"] = user
    item["enabled"] = record.enabled
    item["token_update_tally"] = record.token_update_tally
    item["last_seen"] = rfc3339(record.last_seen) if record.last_seen else ZERO_TIME
    return item


def detailed_item(record: EnrollmentRecord) -> dict:
    """NanoMDM's item plus what we know besides."""
    item = enrollment_item(record)
    item["topic"] = record.topic
    item["device_id"] = record.device_id
    if record.user_id:
        item["user_id"] = record.user_id
    if record.created:
        item["created"] = rfc3339(record.created)
    if record.updated:
        item["updated"] = rfc3339(record.updated)
    return item


def nanomdm_query(body: bytes) -> tuple[EnrollmentFilter, dict[str, bool]]:
    """
    NanoMDM's request body: the filter, and the options as storage takes
    them.  Unknown keys are ignored as by Go's decoder; an empty body (or
    null) filters nothing.
    """
    document = optional_object(decode_json(body, QUERY) if body else None, "the body", QUERY)
    given = optional_object(document.get("filter"), "filter", QUERY)
    query_filter = EnrollmentFilter(
        ids=string_list(given.get("ids"), "filter.ids", QUERY),
        serials=string_list(given.get("serials"), "filter.serials", QUERY),
        user_short_names=string_list(
            given.get("user_short_names"), "filter.user_short_names", QUERY
        ),
        types=string_list(given.get("types"), "filter.types", QUERY),
        enabled=optional_bool(given.get("enabled"), "filter.enabled", QUERY),
    )
    options = optional_object(document.get("options"), "options", QUERY)
    return query_filter, {
        name: bool(optional_bool(options.get(name), "options." + name, QUERY))
        for name in OPTIONS
    }


def url_filter(args: QueryArgs) -> EnrollmentFilter:
    enabled = args.one("enabled")
    if enabled not in (None, "true", "false"):
        raise MessageError("query parameter enabled must be true or false")
    return EnrollmentFilter(
        ids=args.all("id"),
        serials=args.all("serial_number"),
        user_short_names=args.all("user_short_name"),
        types=args.all("type"),
        enabled=None if enabled is None else enabled == "true",
        topic=args.one("topic"),
        user_id=args.one("user_id"),
        device_id=args.one("device_id"),
    )


class EnrollmentsResource(Resource):
    """``POST /v1/enrollments`` (NanoMDM's) and ``GET /v1/enrollments`` (ours)."""

    def __init__(self, store: IInspectionStore):
        super().__init__()
        self._store = store
        self._one = EnrollmentResource(store)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if not path and not request.postpath:
            return self  # /v1/enrollments/
        return self._one

    async def _list(
        self,
        request: Request,
        args: QueryArgs,
        query_filter: EnrollmentFilter,
        options: dict[str, bool],
        nanomdm: bool,
    ) -> bytes:
        values = sum(
            len(listed)
            for listed in (query_filter.ids, query_filter.serials,
                           query_filter.user_short_names, query_filter.types)
        )  # fmt: skip
        if values > MAX_FILTER_VALUES:
            raise MessageError(
                f"the filter lists {values} values; at most {MAX_FILTER_VALUES} in one "
                "query: split it into several"
            )
        page = parse_page(args, ENROLLMENTS, nanomdm=nanomdm)
        records = await self._store.query_enrollments(
            query_filter,
            page.limit + 1,
            after=page.after[0] if page.after else None,
            offset=page.offset or 0,
            **options,
        )
        records, next_cursor = page.split(records, lambda r: (r.id,))
        item = enrollment_item if nanomdm else detailed_item
        document: dict = {"enrollments": [item(r) for r in records]}
        if next_cursor is not None:
            document["next_cursor"] = next_cursor
        request.nanomdm_context["outcome"] = f"listed {len(records)} enrollments"
        return json_body(request, document)

    @async_render
    async def render_POST(self, request: Request) -> bytes:
        try:
            query_filter, options = nanomdm_query(read_body(request))
            return await self._list(
                request, QueryArgs.of(request), query_filter, options, nanomdm=True
            )
        except MessageError as e:
            return json_error(request, e)

    @async_render
    async def render_GET(self, request: Request) -> bytes:
        try:
            args = QueryArgs.of(request)
            args.refuse_unknown(_LIST_PARAMETERS)
            options = {name: args.flag(name) for name in OPTIONS}
            return await self._list(request, args, url_filter(args), options, nanomdm=False)
        except MessageError as e:
            return json_error(request, e)


class EnrollmentResource(Resource):
    """``GET /v1/enrollments/{id}``: one enrollment and its user channels."""

    isLeaf = True

    def __init__(self, store: IInspectionStore):
        super().__init__()
        self._store = store

    @async_render
    async def render_GET(self, request: Request) -> bytes:
        try:
            enrollment_id = path_text([request.prepath[-1], *request.postpath])
            request.nanomdm_context["enrollment_id"] = enrollment_id
            args = QueryArgs.of(request)
            args.refuse_unknown(OPTIONS)
            options = {name: args.flag(name) for name in OPTIONS}
        except MessageError as e:
            return json_error(request, e)
        found = await self._store.query_enrollments(
            EnrollmentFilter(ids=(enrollment_id,)), 1, **options
        )
        if not found:
            return json_error(request, MessageError(f"no enrollment {enrollment_id}", 404))
        (record,) = found
        channels = []
        if record.device_id == record.id:
            channels = await self._store.query_enrollments(
                EnrollmentFilter(device_id=record.id), MAX_LIMIT, **options
            )
        item = detailed_item(record)
        item["user_channels"] = [detailed_item(c) for c in channels if c.id != record.id]
        request.nanomdm_context["outcome"] = "enrollment"
        return json_body(request, item)
