#!/usr/bin/python3
"""Stands in for the Lifeline node while /etc/lifeline/lifeline.conf is
missing: every page says the node is not configured and how to fix it,
and /healthz answers 503, so a load balancer or a monitor never takes
this node for a working one."""
import argparse
import http.server
import json
import socket
import sys

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Lifeline: node not configured</title>
<style>body{font-family:sans-serif;max-width:42rem;margin:3rem auto;line-height:1.5}
code,pre{background:#f3f3f3;padding:.1rem .3rem}</style></head>
<body><h1>This Lifeline node is not configured</h1>
<p>Host <strong>{host}</strong> booted, but found no configuration in
<code>/etc/lifeline/lifeline.conf</code>, so it does not accept mail and is
not part of a cluster.</p>
<p>Give the VM cloud-init data (a NoCloud seed ISO labelled <code>cidata</code>,
or your platform's user-data) that writes <code>/etc/lifeline/lifeline.conf</code>,
the cluster key, the operator token and, if you have one, the TLS certificate,
then reboot or run <code>systemctl start lifeline</code>.
An example is in <code>/usr/share/doc/lifeline/user-data.example</code>.</p>
</body></html>
"""


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "lifeline-unconfigured"
    sys_version = ""

    def do_GET(self):
        if self.path.split("?")[0] == "/healthz":
            body = json.dumps({"status": "unconfigured",
                               "error": "no /etc/lifeline/lifeline.conf"}).encode()
            ctype = "application/json"
        else:
            body = PAGE.replace("{host}", socket.gethostname()).encode()
            ctype = "text/html; charset=utf-8"
        self.send_response(503)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Retry-After", "60")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        # One socket for IPv4 and IPv6.
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    print("Lifeline: this node is NOT CONFIGURED (no /etc/lifeline/lifeline.conf); "
          "serving a notice on port %d" % args.port, flush=True)
    Server(("::", args.port), Handler).serve_forever()


if __name__ == "__main__":
    sys.exit(main())
