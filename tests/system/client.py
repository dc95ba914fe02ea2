#!/usr/bin/python3
"""Clients for the system test, run inside the container.

  client.py tcp-port TEXT   one TCP exchange; prints the client's own port
  client.py loop SECONDS    one-shot TCP and UDP requests in a loop; prints
                            how many were answered right and how many lost
"""
import socket
import sys
import time

ADDR = ("127.0.0.1", 12000)


def tcp_once(text, timeout=10.0):
    s = socket.create_connection(ADDR, timeout=timeout)
    try:
        port = s.getsockname()[1]
        s.sendall(text.encode())
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            data = s.recv(4096)
            if not data:
                return port, reply.decode()
            reply += data
    finally:
        s.close()


def udp_once(sock, text):
    sock.sendto(text.encode(), ADDR)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            return False
        if data.decode() == text.upper():
            return True
    return False


def loop(seconds):
    counts = {"tcp_ok": 0, "tcp_lost": 0, "udp_ok": 0, "udp_lost": 0}
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        i += 1
        text = "richiesta %d" % i
        try:
            ok = tcp_once(text)[1] == text.upper()
        except OSError:
            ok = False
        counts["tcp_ok" if ok else "tcp_lost"] += 1
        counts["udp_ok" if udp_once(u, text) else "udp_lost"] += 1
        time.sleep(0.01)
    print(" ".join("%s=%d" % kv for kv in counts.items()) + " ")


def main():
    if sys.argv[1] == "tcp-port":
        port, reply = tcp_once(sys.argv[2])
        if reply != sys.argv[2].upper():
            sys.exit("wrong reply %r" % reply)
        print(port)
    elif sys.argv[1] == "loop":
        loop(float(sys.argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
