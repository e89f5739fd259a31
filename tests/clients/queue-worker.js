// A service of the client tests: submits TASKS tasks on every instance, runs them
// while active (each one a line "<id> <pid> <monotonic ns>" appended to RUNLOG, then TASK_MS of
// work), and writes its role to ROLEFILE as it changes.
//
//     node queue-worker.js RUNLOG ROLEFILE
const fs = require('fs');
const handover = require('handover-client');

const [runlog, rolefile] = process.argv.slice(2);
const tasks = Number(process.env.TASKS || 2000);
const taskMs = Number(process.env.TASK_MS || 5);

const h = handover.connect();
h.on('hello', () => {
  for (let id = 1; id <= tasks; id++) h.submit(id, { n: id });
});
h.on('role', (role) => fs.writeFileSync(rolefile, role));
h.on('error', (e) => console.error(`worker: ${e.message}`));
h.process(async (payload, id) => {
  if (payload.n !== id) throw new Error(`task ${id} carries ${JSON.stringify(payload)}`);
  fs.appendFileSync(runlog, `${id} ${process.pid} ${process.hrtime.bigint()}\n`);
  await new Promise((resolve) => setTimeout(resolve, taskMs));
  return true;
});
