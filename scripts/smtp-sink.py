#!/usr/bin/env python3
"""A tiny SMTP sink for the tests: accepts every mail and writes it to a folder.

    scripts/smtp-sink.py --dir DIR [--host 127.0.0.1] [--port 0] [--port-file FILE]

Speaks enough SMTP (RFC 5321) for a client such as lettre: EHLO/HELO, MAIL, RCPT, DATA
(dot-unstuffed), RSET, NOOP, QUIT; no STARTTLS, no AUTH. Each message is written as
<DIR>/<unix ns>-<n>.eml, whole (written aside, then renamed). With --port 0 it picks a free
port; the port is printed on stdout (and written to --port-file) once it listens.
Standard library only (`smtpd` is gone from Python 3.12).
"""
import argparse
import itertools
import os
import socketserver
import sys
import time

COUNTER = itertools.count(1)


class Handler(socketserver.StreamRequestHandler):
    timeout = 60

    def reply(self, line):
        self.wfile.write(line.encode("ascii") + b"\r\n")
        self.wfile.flush()

    def handle(self):
        self.reply("220 keel-smtp-sink ready")
        sender, recipients = None, []
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb == "EHLO":
                self.reply("250-keel-smtp-sink")
                self.reply("250-8BITMIME")
                self.reply("250 SMTPUTF8")
            elif verb == "HELO":
                self.reply("250 keel-smtp-sink")
            elif verb == "MAIL":
                sender, recipients = line[10:].strip(), []
                self.reply("250 OK")
            elif verb == "RCPT":
                if sender is None:
                    self.reply("503 MAIL first")
                    continue
                recipients.append(line[8:].strip())
                self.reply("250 OK")
            elif verb == "DATA":
                if not recipients:
                    self.reply("503 RCPT first")
                    continue
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                body = bytearray()
                while True:
                    chunk = self.rfile.readline(1 << 20)
                    if not chunk:
                        return
                    if chunk in (b".\r\n", b".\n"):
                        break
                    if chunk.startswith(b".."):
                        chunk = chunk[1:]
                    body += chunk
                self.store(bytes(body))
                sender, recipients = None, []
                self.reply("250 OK: queued")
            elif verb == "RSET":
                sender, recipients = None, []
                self.reply("250 OK")
            elif verb == "NOOP":
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Command not implemented")

    def store(self, message):
        name = "%d-%d.eml" % (time.time_ns(), next(COUNTER))
        partial = os.path.join(self.server.mail_dir, "." + name + ".partial")
        with open(partial, "wb") as f:
            f.write(message)
        os.rename(partial, os.path.join(self.server.mail_dir, name))


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    with Server((args.host, args.port), Handler) as server:
        server.mail_dir = args.dir
        port = server.server_address[1]
        if args.port_file:
            with open(args.port_file + ".tmp", "w") as f:
                f.write("%d\n" % port)
            os.rename(args.port_file + ".tmp", args.port_file)
        print(port, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
