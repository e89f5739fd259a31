// A web service run by `handover run`: ready when /healthz answers
// (--ready-http); on SIGTERM, sent once a newer container is ready, it finishes
// the requests in flight and exits, and handover tells the supervisor.
const http = require("node:http");

const port = Number(process.env.PORT || 8080);
const started = new Date().toISOString();

const server = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.end("ok\n");
    return;
  }
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ started, pid: process.pid }) + "\n");
});

server.listen(port, () => console.log(`listening on ${port}`));

process.on("SIGTERM", () => {
  console.log("superseded: finishing the requests in flight");
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
