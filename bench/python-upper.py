#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The seed's naive uppercase server, as the benchmark's baseline: a
socketserver.ThreadingTCPServer (a thread per connection; persistent: it
reads 1024 bytes, sends them back uppercased, until EOF) and a
socketserver.UDPServer, on the same port.

    python-upper.py PORT [ADDR]        (ADDR defaults to 127.0.0.1)

The listen backlog is 128 like uppercased's (socketserver's default, 5,
would make connect-per-request measure SYN retransmissions instead).
Runs until killed.
"""

import socket
import socketserver
import sys
import threading


class TCPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        while True:
            try:
                data = sock.recv(1024)
            except OSError:
                return
            if not data:
                return
            try:
                sock.sendall(data.decode("utf-8", "surrogateescape").upper()
                             .encode("utf-8", "surrogateescape"))
            except OSError:
                return


class UDPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data.decode("utf-8", "surrogateescape").upper()
                    .encode("utf-8", "surrogateescape"), self.client_address)


class TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128


class UDPServer(socketserver.UDPServer):
    allow_reuse_address = True


def main():
    if len(sys.argv) not in (2, 3):
        sys.stderr.write("Usage: python-upper.py PORT [ADDR]\n")
        sys.exit(2)
    port = int(sys.argv[1])
    addr = sys.argv[2] if len(sys.argv) == 3 else "127.0.0.1"
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    TCPServer.address_family = family
    UDPServer.address_family = family
    tcp = TCPServer((addr, port), TCPHandler)
    udp = UDPServer((addr, port), UDPHandler)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    udp.serve_forever()


if __name__ == "__main__":
    main()
