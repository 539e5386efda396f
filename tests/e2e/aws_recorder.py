"""A recording endpoint for the AWS CLI: set as ``AWS_ENDPOINT_URL``, it records every ECR
request the real ``aws`` sends (its operation from ``X-Amz-Target`` and its JSON body) and
forwards it to moto, or answers it itself where a case needs an answer moto cannot give:

- ``caller_account``: AWS answers a call without ``registryId`` for the caller's own account
  (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeRepositories.html);
  moto has one account, so a call about a repository without ``registryId`` is answered as the
  caller's empty registry would (RepositoryNotFoundException) when the caller is another account;
- ``deny``: operations answered ``AccessDeniedException`` as a repository policy granting only
  push and pull does.

The bodies are recorded, never the headers (the Authorization header is a signature; tokens
returned by GetAuthorizationToken are in responses, which are not kept); of the Authorization
header only the region of its credential scope is kept (``signed``): the region the CLI signed
for, which is the region it sends the request to.

``EndpointRecorder`` is an HTTPS proxy that records the host each ``CONNECT`` asks for and
refuses it: with it as ``HTTPS_PROXY`` (and no ``AWS_ENDPOINT_URL``), the real CLI shows which
endpoint it resolved (region, FIPS, partition) without anything leaving the machine.
"""

from __future__ import annotations

import json
import re
import socketserver
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
#: ECR operations about one repository (all but the login token)
ABOUT_A_REPOSITORY = (
    "DescribeRepositories",
    "ListImages",
    "DescribeImages",
    "BatchGetImage",
    "CreateRepository",
    "PutImageTagMutability",
    "BatchDeleteImage",
)


class Recorder:
    def __init__(self, upstream: str, caller_account: Optional[str] = None, deny: tuple = ()):
        self.upstream = upstream.rstrip("/")
        self.caller_account = caller_account
        self.deny = set(deny)
        self.requests: list = []  # (operation, body dict)
        self.signed: list = []  # (operation, body dict, signing region or None)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                target = self.headers.get("X-Amz-Target", "")
                operation = (
                    target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else target
                )
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                recorder.requests.append((operation, body))
                scope = re.search(
                    r"Credential=[^/,\s]+/[0-9]{8}/([^/,\s]+)/",
                    self.headers.get("Authorization", ""),
                )
                recorder.signed.append((operation, body, scope[1] if scope else None))
                own = recorder.answer(operation, body)
                if own is not None:
                    status, payload = own
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-amz-json-1.1")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                request = urllib.request.Request(
                    recorder.upstream + self.path, data=raw, headers=headers, method="POST"
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, data, ctype = (
                            response.status,
                            response.read(),
                            response.headers.get("Content-Type", ""),
                        )
                except urllib.error.HTTPError as err:
                    status, data, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
                self.send_response(status)
                self.send_header("Content-Type", ctype or "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, operation: str, body: dict):
        if operation in self.deny:
            return 400, {
                "__type": "AccessDeniedException",
                "message": f"User: arn:aws:iam::{self.caller_account or '111122223333'}"
                f":user/ci is not authorized to perform: ecr:{operation}",
            }
        if (
            self.caller_account
            and operation in ABOUT_A_REPOSITORY
            and body.get("registryId", self.caller_account) == self.caller_account
        ):
            name = body.get("repositoryName") or (body.get("repositoryNames") or ["?"])[0]
            return 400, {
                "__type": "RepositoryNotFoundException",
                "message": f"The repository with name '{name}' does not exist in the "
                f"registry with id '{self.caller_account}'",
            }
        return None

    def about_a_repository(self) -> list:
        return [(op, body) for op, body in self.requests if op in ABOUT_A_REPOSITORY]

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class EndpointRecorder:
    """An HTTPS proxy that records each ``CONNECT host:port`` and answers 403: ``targets``."""

    def __init__(self):
        self.targets: list = []  # "host:port", in order
        recorder = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline().decode("latin-1").split()
                if len(line) >= 2 and line[0] == "CONNECT":
                    recorder.targets.append(line[1])
                self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> EndpointRecorder:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
