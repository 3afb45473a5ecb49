import socket, sys
def raw(req):
    s = socket.create_connection(("127.0.0.1", 18080))
    s.sendall(req)
    s.settimeout(2)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            out += d
            # stop after full response for keep-alive
            if b"\r\n\r\n" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if req.startswith(b"HEAD") or (cl and len(body) >= int(cl[0].split(b":")[1])):
                    break
    except socket.timeout:
        pass
    s.close()
    return out
for name, req in [
    ("get11", b"GET /definitely-not-here HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("get10", b"GET /definitely-not-here HTTP/1.0\r\n\r\n"),
    ("getcall", b"GET /call HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("post", b"POST /call HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
    ("head", b"HEAD /x HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ("get10ka", b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
    ("get11close", b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
]:
    r = raw(req)
    open(name + ".bin", "wb").write(r)
    print("==", name); print(repr(r))
