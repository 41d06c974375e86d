"""
``nanomdm-tw-enqueue ID... < command.plist``: queue one command for many enrollments.

Few IDs go in NanoMDM's path form, ``PUT /v1/enqueue/{id,id,...}``, which
every NanoMDM-compatible server takes.  Beyond what fits in a URL that
proxies accept, they go in our JSON form, ``POST /v1/enqueue`` with
``{"ids": [...], "command": base64}``, up to 100,000 IDs a request; a server
without it (NanoMDM, an older nanomdm-tw) refuses the POST before changing
anything, and the IDs then go in path-form requests of a safe length.  The
answers of several requests are merged into one document in the API's own
shape, so the output reads the same however many requests it took.
"""

import argparse
import base64
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from treq.client import HTTPClient
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.web.client import Agent, HTTPConnectionPool

from ..errors import MessageError
from ..mdm.messages import decode_command
from ..resources.api import result_status

PROGRAM = "nanomdm-tw-enqueue"
DEFAULT_URL = "http://127.0.0.1:9000"
# Comma-joined, escaped IDs per path-form request: well inside the 8 KiB
# request line that common proxies allow (the servers themselves take 1 MiB).
PATH_FORM_LIMIT = 4000
# The JSON form's limit per request (API.md, POST /v1/enqueue).
JSON_FORM_LIMIT = 100_000
# Answers to the JSON form from a server that does not have it: nothing was enqueued.
NO_JSON_FORM = frozenset({301, 302, 307, 308, 400, 404, 405, 415})
FORMS = ("auto", "path", "json")


@dataclass
class Answer:
    """One HTTP answer of the API; ``sent``: how many IDs the requests behind it carried."""

    code: int
    body: bytes
    sent: int = 0

    @property
    def ok(self) -> bool:
        return self.code == 200


def _endpoint(url: str) -> str:
    return url.rstrip("/") + "/v1/enqueue"


def _query(no_push: bool) -> str:
    return "?nopush=1" if no_push else ""


def _path(ids: list[str]) -> str:
    return quote(",".join(ids), safe=":,@")


async def enqueue_path_form(
    http: HTTPClient, url: str, api_key: str, ids: list[str], command: bytes, no_push: bool
) -> Answer:
    """``PUT /v1/enqueue/{ids}``: NanoMDM's form, one request."""
    response = await http.request(
        "PUT", f"{_endpoint(url)}/{_path(ids)}{_query(no_push)}", data=command,
        auth=("nanomdm", api_key), allow_redirects=False,
    )  # fmt: skip
    return Answer(response.code, await response.content(), len(ids))


async def enqueue_json_form(
    http: HTTPClient, url: str, api_key: str, ids: list[str], command: bytes, no_push: bool
) -> Answer:
    """``POST /v1/enqueue`` with the IDs and the command in a JSON body, one request."""
    body = json.dumps({"ids": ids, "command": base64.b64encode(command).decode("ascii")})
    response = await http.request(
        "POST", _endpoint(url) + _query(no_push), data=body.encode("utf-8"),
        headers={"Content-Type": ["application/json"]},
        auth=("nanomdm", api_key), allow_redirects=False,
    )  # fmt: skip
    return Answer(response.code, await response.content(), len(ids))


def path_chunks(ids: list[str], limit: int = PATH_FORM_LIMIT) -> Iterator[list[str]]:
    """``ids`` in runs whose escaped path stays within ``limit`` (one ID may pass it alone)."""
    chunk: list[str] = []
    length = 0
    for enrollment_id in ids:
        size = len(_path([enrollment_id])) + 1
        if chunk and length + size > limit:
            yield chunk
            chunk, length = [], 0
        chunk.append(enrollment_id)
        length += size
    if chunk:
        yield chunk


def merge_answers(answers: list[Answer]) -> Answer:
    """
    One API result for several requests' results: per-ID status together,
    top-level errors joined, and the status code the server would give the
    whole (200, 207 some failed, 500 all or a top-level error).
    """
    if len(answers) == 1:
        return answers[0]
    merged: dict = {}
    errors: dict[str, list[str]] = {}
    for answer in answers:
        document = json.loads(answer.body)
        merged.setdefault("status", {}).update(document.get("status", {}))
        for key in ("no_push", "command_uuid", "request_type"):
            if key in document:
                merged[key] = document[key]
        for key in ("command_error", "push_error"):
            if key in document and document[key] not in errors.setdefault(key, []):
                errors[key].append(document[key])
    if not merged["status"]:
        del merged["status"]
    merged.update({key: "; ".join(texts) for key, texts in errors.items() if texts})
    sent = sum(answer.sent for answer in answers)
    body = (json.dumps(merged, indent="\t") + "\n").encode("utf-8")
    return Answer(result_status(merged, sent), body, sent)


def _is_result(answer: Answer) -> bool:
    """An API result document (200, 207, 500), which merges; anything else stops."""
    if answer.code not in (200, 207, 500):
        return False
    try:
        return isinstance(json.loads(answer.body), dict)
    except ValueError:
        return False


async def _each(send, http, url, api_key, chunks, command, no_push) -> list[Answer]:
    """Send chunk after chunk; stop after the first answer that is no API result."""
    answers = []
    for chunk in chunks:
        answers.append(await send(http, url, api_key, chunk, command, no_push))
        if not _is_result(answers[-1]):
            break
    return answers


def _combine(answers: list[Answer]) -> Answer:
    return merge_answers(answers) if all(map(_is_result, answers)) else answers[-1]


async def enqueue(
    http: HTTPClient, url: str, api_key: str, ids: list[str], command: bytes,
    no_push: bool = False, form: str = "auto",
) -> Answer:  # fmt: skip
    """Enqueue ``command`` for ``ids`` in as few requests as the server allows."""
    if form == "auto" and len(_path(ids)) <= PATH_FORM_LIMIT:
        form = "path"
    if form != "path":
        chunks = [ids[i : i + JSON_FORM_LIMIT] for i in range(0, len(ids), JSON_FORM_LIMIT)]
        answers = await _each(enqueue_json_form, http, url, api_key, chunks, command, no_push)
        unsupported = len(answers) == 1 and answers[0].code in NO_JSON_FORM
        if form == "json" or not unsupported:
            return _combine(answers)
    chunks = list(path_chunks(ids))
    return _combine(await _each(enqueue_path_form, http, url, api_key, chunks, command, no_push))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Enqueue the MDM command plist on stdin for enrollment IDs"
        " (e.g. from nanomdm-cmdr) and print the API's JSON answer.",
    )
    parser.add_argument("ids", nargs="*", metavar="ID",
                        help="enrollment IDs (commas also separate)")  # fmt: skip
    parser.add_argument("--ids-file", type=Path,
                        help="read more enrollment IDs from this file, one a line")  # fmt: skip
    parser.add_argument("--url", default=os.environ.get("NANOMDM_URL", DEFAULT_URL),
                        help=f"server base URL [env NANOMDM_URL, default {DEFAULT_URL}]")  # fmt: skip
    parser.add_argument("--api-key", default=os.environ.get("NANOMDM_API_KEY"),
                        help="API key [env NANOMDM_API_KEY, safer than the flag]")  # fmt: skip
    parser.add_argument("--nopush", action="store_true",
                        help="queue only, send no APNs push")  # fmt: skip
    parser.add_argument("--form", choices=FORMS, default="auto",
                        help="path: PUT /v1/enqueue/{ids}; json: POST /v1/enqueue;"
                        " auto: path for few IDs, else json with path as fallback")  # fmt: skip
    return parser


def _read_ids(args: argparse.Namespace) -> list[str]:
    texts = list(args.ids)
    if args.ids_file is not None:
        texts += args.ids_file.read_text().splitlines()
    ids = [part.strip() for text in texts for part in text.split(",")]
    return list(dict.fromkeys(i for i in ids if i))


async def _main(reactor, args: argparse.Namespace, ids: list[str], command: bytes) -> None:
    pool = HTTPConnectionPool(reactor, persistent=True)
    http = HTTPClient(Agent(reactor, pool=pool))
    try:
        answer = await enqueue(http, args.url, args.api_key, ids, command, args.nopush, args.form)
    except (ConnectError, OSError) as e:
        print(f"{PROGRAM}: {args.url}: {e}", file=sys.stderr)
        raise SystemExit(1)
    finally:
        await pool.closeCachedConnections()
    sys.stdout.buffer.write(answer.body)
    sys.stdout.flush()
    if not answer.ok:
        print(f"{PROGRAM}: HTTP {answer.code}", file=sys.stderr)
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("no API key: set NANOMDM_API_KEY or give --api-key")
    try:
        ids = _read_ids(args)
    except OSError as e:
        parser.error(str(e))
    if not ids:
        parser.error("no enrollment IDs")
    if sys.stdin.isatty():
        parser.error("pipe the command plist into stdin, e.g. from nanomdm-cmdr")
    command = sys.stdin.buffer.read()
    try:
        decode_command(command)
    except MessageError as e:
        parser.error(f"stdin: {e}")
    task.react(lambda reactor: Deferred.fromCoroutine(_main(reactor, args, ids, command)))


if __name__ == "__main__":
    main()
