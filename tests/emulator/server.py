"""HTTPS server and command line of the emulator: ``python -m tests.emulator --ready-file PATH [options]``.

One ThreadingHTTPServer (daemon threads, TLS handshake in the worker thread so a slow client cannot stall accept)
on 127.0.0.1 serves login, Graph, Cloudflare and the admin API. SIGTERM/SIGINT stop it cleanly.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .app import App
from .cloudflare import CloudflareAccount, warm_up
from .faults import FaultConfigError, Faults
from .state import SeedError, State
from .tls import generate_server_material
from .web import Headers, Request, Response

DEFAULT_SEED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_seed.json")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "entrascim-emulator/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this many seconds

    def _serve(self):
        app = self.server.app
        path, _mark, raw_query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = Request(self.command, path, raw_query, Headers(list(self.headers.items())), body, self.client_address)
        try:
            response = app.handle(request)
        except Exception:  # pylint: disable=broad-except
            # A bug in the emulator must still produce an answer (and be visible on stderr), never a hung client.
            sys.stderr.write("emulator: internal error on %s %s\n%s" % (self.command, path, traceback.format_exc()))
            response = Response.json(500, {"error": {"code": "InternalServerError", "message": "The emulator failed to handle the request."}})
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        if app.verbose:
            sys.stderr.write("emulator: %s %s -> %d\n" % (self.command, path, response.status))

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        # Request lines may carry query strings; the request log (admin API) is the place to read traffic.
        return


class TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, app, ssl_context):
        self.app = app
        self.ssl_context = ssl_context
        super().__init__(address, Handler)

    def finish_request(self, request, client_address):
        """Runs in the per-connection thread: do the TLS handshake here, then serve the connection."""
        try:
            request.settimeout(Handler.timeout)
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # Client disconnects and TLS errors are routine; anything else is printed.
        if not isinstance(sys.exc_info()[1], (ssl.SSLError, OSError)):
            super().handle_error(request, client_address)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m tests.emulator",
                                     description="Local Microsoft Graph v1.0 + Entra login + Cloudflare SCIM v2 emulator (docs/emulator.md).")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = pick a free one)")
    parser.add_argument("--faults", default="none", help="fault profile (none, realistic, harsh) or a JSON fault config file")
    parser.add_argument("--seed", help="seed JSON file (default: tests/emulator/default_seed.json)")
    parser.add_argument("--cycle-interval", type=float, default=2.0, help="seconds between provisioning cycles of started jobs")
    parser.add_argument("--page-size", type=int, default=100, help="default Graph page size (tests use small values)")
    parser.add_argument("--ready-file", required=True, help="where to write the endpoints JSON once the server listens")
    parser.add_argument("--verbose", action="store_true", help="print one line per request (method, path, status) on stderr")
    return parser


def load_seed(path):
    with open(path or DEFAULT_SEED, "r", encoding="utf-8") as handle:
        return json.load(handle)


def _write_ready(path, payload):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ready-", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)
    os.replace(tmp, path)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.page_size < 1 or args.cycle_interval <= 0:
        sys.stderr.write("emulator: --page-size must be >= 1 and --cycle-interval > 0\n")
        return 2
    state = State()
    try:
        faults = Faults(args.faults)
        state.apply_seed(load_seed(args.seed), CloudflareAccount)
    except (FaultConfigError, SeedError, OSError, ValueError) as exc:
        sys.stderr.write("emulator: %s\n" % exc)
        return 2
    if not state.tenant_id:
        sys.stderr.write("emulator: the seed must set tenant_id\n")
        return 2
    workdir = tempfile.mkdtemp(prefix="entrascim-emulator-")
    ca_path, cert_path, key_path = generate_server_material(workdir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    app = App(state, faults, page_size=args.page_size, cycle_interval=args.cycle_interval, verbose=args.verbose)
    try:
        server = TLSServer(("127.0.0.1", args.port), app, context)
    except OSError as exc:
        sys.stderr.write("emulator: cannot listen on 127.0.0.1:%d: %s\n" % (args.port, exc))
        shutil.rmtree(workdir, ignore_errors=True)
        return 2
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    port = server.server_address[1]
    app.set_port(port)
    stop = threading.Event()

    def on_signal(signum, frame):
        del signum, frame  # signal handler signature
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="emulator-http", daemon=True)
    serving.start()

    def cycles():
        while not stop.wait(args.cycle_interval):
            try:
                app.engine.run_cycle(honour_backoff=True)
            except Exception:  # pylint: disable=broad-except
                sys.stderr.write("emulator: provisioning cycle failed\n%s" % traceback.format_exc())

    threading.Thread(target=cycles, name="emulator-cycles", daemon=True).start()
    threading.Thread(target=warm_up, name="emulator-warm-up", daemon=True).start()
    base = "https://127.0.0.1:%d" % port
    _write_ready(args.ready_file, {
        "graph_endpoint": base, "authority_host": base, "cloudflare_api_endpoint": base + "/client/v4", "ca_path": ca_path,
        "admin_url": base + "/_admin", "pid": os.getpid(), "tenant_id": state.tenant_id, "managed_identity_endpoint": base + "/msi/token",
        "imds_endpoint": base + "/metadata/identity/oauth2/token", "port": port,
    })
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
