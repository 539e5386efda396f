"""An HTTP proxy that refuses every request with one status, for make-fixtures.sh.

    python3 refusing_proxy.py ADDRESS PORT "407 Proxy Authentication Required"

CONNECT (an https:// download through the proxy) and plain requests alike get the status line,
with ``Proxy-Authenticate`` for a 407, as a corporate proxy answers them.
"""

import socketserver
import sys

ADDRESS, PORT, STATUS = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class Refuse(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # the request's headers
        challenge = (
            b'Proxy-Authenticate: Basic realm="corp"\r\n' if STATUS.startswith("407") else b""
        )
        self.wfile.write(
            b"HTTP/1.1 "
            + STATUS.encode()
            + b"\r\n"
            + challenge
            + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )


socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer((ADDRESS, PORT), Refuse).serve_forever()
