"""A stand-in for the Hugging Face Hub API on 127.0.0.1: answers the calls `upload_folder`
makes (create repo, validate card, preupload, commit) and records each one."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeHub", "fake_hub"]


class FakeHub:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, data: dict[str, Any]) -> None:
                body = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                hub.calls.append(("GET", self.path, b""))
                self._reply({})

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                hub.calls.append(("POST", self.path, body))
                if self.path == "/api/repos/create":
                    req = json.loads(body)
                    self._reply({"url": f"{hub.url}/datasets/{req['organization']}/{req['name']}"})
                elif "/preupload/" in self.path:
                    files = json.loads(body)["files"]
                    modes = [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in files
                    ]
                    self._reply({"files": modes})
                elif "/commit/" in self.path:
                    repo = self.path.split("/commit/")[0].removeprefix("/api/")
                    self._reply(
                        {
                            "commitUrl": f"{hub.url}/{repo}/commit/{'ab' * 20}",
                            "commitOid": "ab" * 20,
                        }
                    )
                else:
                    self._reply({})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def committed_files(self) -> dict[str, bytes]:
        """path -> bytes of every file the commit calls carried."""
        out: dict[str, bytes] = {}
        for method, path, body in self.calls:
            if method == "POST" and "/commit/" in path:
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        value = item["value"]
                        out[value["path"]] = base64.b64decode(value["content"])
        return out


def fake_hub() -> Iterator[FakeHub]:
    hub = FakeHub()
    thread = threading.Thread(target=hub.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        hub.server.shutdown()
        hub.server.server_close()
