// The throughput benchmark's service: submits TASKS no-op tasks (after
// SUBMIT_AFTER_MS), runs them while
// active, and once it has run the last writes to OUT how long the tasks took from
// the first.
//
//     node bench-worker.js OUT
const fs = require('fs');
const handover = require('handover-client');

const out = process.argv[2];
const tasks = Number(process.env.TASKS);
const h = handover.connect();
let first = null;
// Once the instances have settled who is active.
setTimeout(() => {
  for (let id = 1; id <= tasks; id++) h.submit(id, null);
}, Number(process.env.SUBMIT_AFTER_MS || 0));
h.process((payload, id) => {
  if (first === null) first = process.hrtime.bigint();
  if (id === tasks) {
    const seconds = Number(process.hrtime.bigint() - first) / 1e9;
    fs.writeFileSync(out, JSON.stringify({ tasks, seconds }));
  }
  return true;
});
