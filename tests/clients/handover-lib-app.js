// An app written against handover-lib, with only its import changed: it serves
// HTTP, says it is ready with startBroadcasting(), and closes its server in the
// shutdown callback. MARK records "<event> <VERSION>".
//
//     node handover-lib-app.js MARK
const fs = require('fs');
const http = require('http');
const { HandoverPeer } = require('handover-client'); // was: require('handover-lib')

const mark = (what) => fs.appendFileSync(process.argv[2], `${what} ${process.env.VERSION}\n`);
const peer = new HandoverPeer(new Date(), { id: process.env.VERSION });
const server = http.createServer((req, res) => res.end(process.env.VERSION));

peer.startListening(async () => {
  await new Promise((resolve) => server.close(resolve));
  mark('shutdown');
});
server.listen(8080, () => {
  mark('serving');
  peer.startBroadcasting();
});
