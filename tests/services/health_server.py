"""A service with a health endpoint: `GET /` answers 200, or 500 while the file
named by $SICK exists. Serves on 127.0.0.1:$PORT."""

import http.server
import os

SICK = os.environ.get("SICK", "")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if SICK and os.path.exists(SICK) else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
