// The fault-injection harness's service, in Node (see chaos.py, which it
// mirrors): a tick every 20 ms, written with the monotonic clock to a shared
// ledger. Node cannot send sd_notify datagrams: it writes CHAOS_READY_FILE once
// ready, for `--ready-cmd`.
"use strict";
const fs = require("fs");

const env = process.env;
const ledger = fs.openSync(env.CHAOS_LEDGER, "a");
const name = env.CHAOS_NAME || "?";
let role = "active";

const nowUs = () => process.hrtime.bigint() / 1000n;
const note = (what) => fs.writeSync(ledger, `${nowUs()} ${name} ${process.pid} ${what}\n`);

let stopping = false;
process.on("SIGTERM", () => {
  if (env.CHAOS_TERM_IGNORE === "1") {
    note("term-ignored");
    return;
  }
  stopping = true;
});

if (env.HANDOVER_EVENTS_FD) {
  role = "standby";
  const events = fs.createReadStream(null, { fd: Number(env.HANDOVER_EVENTS_FD) });
  let buffered = "";
  events.on("data", (chunk) => {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      try {
        const event = JSON.parse(line);
        if (event.event === "role") {
          role = event.role;
          note(`role ${role}`);
        }
      } catch (e) {}
    }
  });
  events.on("error", () => {});
}

note("start");
// An orphan, as services leave them: `handover` must reap it.
require("child_process").spawnSync("sh", ["-c", "sleep 0.3 &"]);
const noise = Number(env.CHAOS_NOISE || "0");
if (noise) process.stderr.write("x".repeat(noise));

const finish = (code, what) => {
  note(`${what} ${code}`);
  process.exit(code);
};
const tick = setInterval(() => {
  if (stopping) {
    clearInterval(tick);
    finish(Number(env.CHAOS_TERM_CODE || "0"), "stop");
  }
  note(`tick ${role}`);
}, 20);

const readyMs = Number(env.CHAOS_READY_MS || "0");
if (readyMs >= 0) {
  setTimeout(() => {
    if (env.CHAOS_READY_FILE) fs.writeFileSync(env.CHAOS_READY_FILE, "ready\n");
    note("ready");
  }, readyMs);
}
if (env.CHAOS_EXIT_MS) {
  setTimeout(() => finish(Number(env.CHAOS_EXIT_CODE || "1"), "exit"), Number(env.CHAOS_EXIT_MS));
}
