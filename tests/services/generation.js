// An HTTP service written for systemd socket activation, in Node: it serves on
// descriptor 3 (the socket `handover run --listen http=...` passes), answers with
// its generation, and writes READY_FILE once it listens (Node cannot send sd_notify
// datagrams without a native module). On SIGTERM it stops accepting and finishes
// the requests in flight.
//
//     node generation.js GENERATION READY_FILE
const fs = require("fs");
const http = require("http");

if (process.env.LISTEN_PID !== String(process.pid)) {
  console.error("LISTEN_PID is not this process: the sockets are not for us");
  process.exit(1);
}
const [generation, readyFile] = process.argv.slice(2);
const server = http.createServer((req, res) => {
  const body = `generation ${generation}\n`;
  res.writeHead(200, { "Content-Length": Buffer.byteLength(body), Connection: "close" });
  res.end(body);
});
server.listen({ fd: 3 }, () => fs.writeFileSync(readyFile, "ready\n"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
