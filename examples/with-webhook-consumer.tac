# nanomdm-tw and a service of your own in one process:  twistd -ny with-webhook-consumer.tac
#
# The server is configured as `twistd nanomdm` is, from NANOMDM_* variables
# (NANOMDM_API, NANOMDM_CA, NANOMDM_STORAGE, ...; NANOMDM_DEV=1 to try it), and
# its webhook posts every MDM event to the consumer below, which listens on
# loopback port WEBHOOK_CONSUMER_PORT (default 9001) of the same process.
# The consumer checks the X-Hmac-Signature when NANOMDM_WEBHOOK_HMAC_KEY is set,
# logs one line per event and counts events by topic; GET /webhook shows the
# counts.  Replace `handle` with what your deployment needs (inventory, alerts,
# a message queue...), and keep it quick: it runs on the server's reactor.
#
# With --workers (the default on mysql and pgsql) the worker processes run the
# MDM server only; their webhooks post to this one consumer in the first process.

import base64
import hashlib
import hmac
import json
import os
from collections import Counter

from twisted.application import strports
from twisted.application.service import Application
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from nanomdm_tw.tap import Options, makeService

PORT = int(os.environ.get("WEBHOOK_CONSUMER_PORT", "9001"))
HMAC_KEY = os.environ.get("NANOMDM_WEBHOOK_HMAC_KEY", "").encode("utf-8")


class WebhookConsumer(Resource):
    """Takes NanoMDM-style webhook events (one JSON object per POST)."""

    isLeaf = True
    _log = Logger()

    def __init__(self):
        super().__init__()
        self.topics = Counter()

    def render_POST(self, request):
        body = request.content.read()
        if HMAC_KEY:
            expected = base64.b64encode(hmac.new(HMAC_KEY, body, hashlib.sha256).digest())
            given = request.getHeader("X-Hmac-Signature") or ""
            if not hmac.compare_digest(expected, given.encode("ascii", "replace")):
                request.setResponseCode(401)
                return b"bad signature\n"
        try:
            event = json.loads(body)
        except ValueError:
            request.setResponseCode(400)
            return b"not JSON\n"
        self.handle(event)
        return b""

    def handle(self, event):
        details = event.get("checkin_event") or event.get("acknowledge_event") or {}
        self.topics[event.get("topic", "?")] += 1
        self._log.info(
            "webhook {topic} enrollment_id={enrollment_id} status={status} event_id={event_id}",
            topic=event.get("topic"),
            enrollment_id=details.get("ids", {}).get("id", "-"),
            status=details.get("status", "-"),
            event_id=event.get("event_id"),
        )

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        return (json.dumps(dict(self.topics), indent="\t") + "\n").encode("utf-8")


options = Options()
options.parseOptions(["--webhook-url", f"http://127.0.0.1:{PORT}/webhook"])

application = Application("nanomdm-tw-with-webhook-consumer")
makeService(options).setServiceParent(application)
consumer = strports.service(f"tcp:{PORT}:interface=127.0.0.1", Site(WebhookConsumer()))
consumer.setName("webhook-consumer")
consumer.setServiceParent(application)
