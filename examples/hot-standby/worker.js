// A hot standby under `handover run --mode failover --standby hot`, in Node: it
// runs on every instance, works while active, and keeps the active's progress while
// standing by. In place of mongoose-failover's unmanaged mode.
//
//     handover run --mode failover --standby hot -- node worker.js
const net = require("net");
const readline = require("readline");

const channel = new net.Socket({ fd: Number(process.env.HANDOVER_EVENTS_FD) });
let role = "standby";
let done = 0n;

setInterval(() => {
  if (role !== "active") return;
  done += 1n; // one unit of work, then publish how far we are
  const state = done.toString(16).padStart(16, "0");
  channel.write(JSON.stringify({ state }) + "\n");
}, 100);

readline.createInterface({ input: channel }).on("line", (line) => {
  const event = JSON.parse(line);
  if (event.event === "role" && event.role !== role) {
    role = event.role;
    console.log(`role ${role} (leader ${event.leader}), resuming after ${done}`);
  } else if (event.event === "state") {
    done = BigInt("0x" + (event.state || "0"));
  }
});
channel.on("close", () => process.exit(0));
