"""A local HTTP server on 127.0.0.1 (random free port) with misbehaving endpoints for download tests.

Paths (each serves `FakeServer.payload` unless said otherwise):
  /ok/<name>        normal file, honours Range (206 + Content-Range)
  /drop-once/<n>    first request sends half the body then closes; later requests behave
  /truncated/<n>    never sends more than the first CUT bytes (Content-Length claims the rest)
  /slow/<n>         sleeps `slow_s` before answering
  /stall-once/<n>   first request sends half then goes silent for `slow_s`
  /flaky/<n>        first `flaky_failures` requests get HTTP 503
  /norange/<n>      ignores Range (always 200 with the whole body)
  /missing/<n>      404
  /norange-drop/<n> ignores Range and sends only the first half (every try restarts at byte 0);
                    after `give_up_after` requests it answers 404, so a client that retries
                    forever still ends (tests then count the requests)
  /trickle/<n>      honours Range but sends at most `trickle` bytes per request, then closes
  /html/<n>         while `html` is set: 200 with an HTML error page (Content-Type text/html)
  /badrange/<n>     a Range request gets 206 whose Content-Range starts at byte 0 (and the body
                    from 0); a request without Range is served normally
Every request's path and Range header are recorded in `server.requests`.
"""
from __future__ import annotations

import collections
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer:
    def __init__(self, payload: bytes, *, slow_s: float = 1.0, flaky_failures: int = 2):
        self.payload = payload
        self.cut = len(payload) // 3
        self.slow_s = slow_s
        self.flaky_failures = flaky_failures
        self.give_up_after = 40
        self.trickle = 1000
        self.html = True
        self.requests: list[tuple[str, str | None]] = []
        self.hits: collections.Counter = collections.Counter()
        self.files: dict[str, bytes] = {}  # /files/<name> -> bytes (for whole-dataset tests)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                kind = self.path.split("/")[1]
                server.hits[self.path] += 1
                n = server.hits[self.path]
                body = server.files.get(self.path, server.payload)
                if kind == "missing" or (kind == "files" and self.path not in server.files):
                    return self._status(404)
                if kind == "flaky" and n <= server.flaky_failures:
                    return self._status(503)
                if kind == "norange-drop" and n > server.give_up_after:
                    return self._status(404)
                if kind == "html" and server.html:
                    page = b"<html><body><h1>Service temporarily unavailable</h1></body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                if kind == "slow":
                    time.sleep(server.slow_s)
                start = 0
                rng = self.headers.get("Range")
                if rng and kind == "badrange":
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 0-{len(body) - 1}/{len(body)}")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if rng and kind not in ("norange", "norange-drop"):
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                rest = body[start:]
                if kind == "drop-once" and n == 1:
                    self.wfile.write(rest[: len(rest) // 2])
                    self.close_connection = True
                    return
                if kind == "norange-drop":
                    self.wfile.write(rest[: len(rest) // 2])
                    self.close_connection = True
                    return
                if kind == "trickle":
                    self.wfile.write(rest[: server.trickle])
                    self.close_connection = True
                    return
                if kind == "truncated":
                    self.wfile.write(body[start:server.cut] if start < server.cut else b"")
                    self.close_connection = True
                    return
                if kind == "stall-once" and n == 1:
                    self.wfile.write(rest[: len(rest) // 2])
                    self.wfile.flush()
                    time.sleep(server.slow_s)
                    self.close_connection = True
                    return
                self.wfile.write(rest)

            def _status(self, code):
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # clients hang up on purpose here
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, kind: str, name: str = "f.bin") -> str:
        return f"{self.base}/{kind}/{name}"

    def ranges(self, path_part: str) -> list[str | None]:
        return [r for p, r in self.requests if path_part in p]

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
