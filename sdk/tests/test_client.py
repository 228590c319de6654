"""The SDK on its own: standard library only, against a local HTTP server that records what it gets.

Runs without eventpipe installed (``python -m unittest discover sdk/tests``), which is how
``tests/test_sdk_distribution.py`` runs it in a clean venv. The SDK against the real
collector is ``tests/test_sdk.py``.
"""

from __future__ import annotations

import base64
import gzip
import http.server
import json
import threading
import unittest

from eventpipe_sdk import Client, LIBRARY_NAME


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers each POST with the next status of ``statuses`` (then 200) and keeps the bodies."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        server = self.server
        with server.lock:
            status = server.statuses.pop(0) if server.statuses else 200
            server.requests.append((self.path, dict(self.headers), json.loads(body), status))
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


class SdkAgainstARecorder(unittest.TestCase):
    def setUp(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        self.server.lock = threading.Lock()
        self.server.requests = []
        self.server.statuses = []
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"

    def tearDown(self):
        self.server.shutdown()
        self.server.server_close()

    def events(self):
        return [e for _, _, body, status in self.server.requests if status == 200 for e in body["batch"]]

    def test_calls_arrive_as_one_authenticated_gzip_batch(self):
        with Client("key-1", host=self.host, flush_interval=60) as client:
            client.track("Signed Up", user_id="u1", properties={"plan": "pro"})
            client.identify(user_id="u1", traits={"email": "a@example.com"})
            self.assertTrue(client.flush(timeout=10))
        path, headers, body, _ = self.server.requests[0]
        self.assertEqual(path, "/v1/batch")
        self.assertEqual(headers["Authorization"], "Basic " + base64.b64encode(b"key-1:").decode())
        self.assertEqual([(e["type"], e["userId"]) for e in body["batch"]], [("track", "u1"), ("identify", "u1")])
        self.assertEqual(body["batch"][0]["properties"], {"plan": "pro"})
        self.assertEqual(body["batch"][0]["context"]["library"]["name"], LIBRARY_NAME)
        self.assertEqual(len({e["messageId"] for e in body["batch"]}), 2)
        self.assertIn("sentAt", body)

    def test_a_503_is_retried_with_the_same_message_ids(self):
        self.server.statuses = [503, 503]
        with Client("key-1", host=self.host, flush_interval=60, backoff_base=0.01) as client:
            client.track("Retried", anonymous_id="a1")
            self.assertTrue(client.flush(timeout=10))
            self.assertEqual(client.stats.dropped, 0)
        tries = [body["batch"][0]["messageId"] for _, _, body, _ in self.server.requests]
        self.assertEqual(len(tries), 3)
        self.assertEqual(len(set(tries)), 1)  # the server dedups a retry by its messageId
        self.assertEqual([e["event"] for e in self.events()], ["Retried"])

    def test_a_400_is_not_retried_and_the_drop_is_counted(self):
        self.server.statuses = [400]
        with Client("key-1", host=self.host, flush_interval=60, backoff_base=0.01) as client:
            client.track("Refused", anonymous_id="a1")
            client.flush(timeout=10)
            self.assertEqual(client.stats.dropped, 1)
        self.assertEqual(len(self.server.requests), 1)


if __name__ == "__main__":
    unittest.main()
