import { spawn } from 'node:child_process';
import { Communicator } from './protocol/communicator.ts';
const [mode, rankText, root] = process.argv.slice(2);
if (mode === 'parent') {
  const kids = [0, 1].map((r) => spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir=/tmp/prof', '--import', 'tsx', '.arbench.ts', 'child', String(r), 'tcp://127.0.0.1:45871'], { stdio: 'inherit' }));
  await Promise.all(kids.map((k) => new Promise((r) => k.on('exit', r))));
} else {
  const rank = Number(rankText);
  const comm = await Communicator.create({ rank, size: 2, rootAddress: root!, timeoutMs: 60000 });
  const data = new Float32Array(4 * 1024 * 1024).fill(1);
  await comm.allreduce(data);
  const t = performance.now();
  for (let i = 0; i < 10; i++) await comm.allreduce(data);
  const s = (performance.now() - t) / 1000 / 10;
  if (rank === 0) console.log('MBps', 16 / s);
  await comm.close();
}
