// Soak for the communicator:
// `node --import tsx test/protocol/soak.ts [--sessions 20] [--count 14] [--timeout-ms 5000] [--allreduce-only]`.
// Each session starts 4 ranks as processes on 127.0.0.1 (fixtures/rank.ts, mode soak) that run `count`
// allreduces of mixed sizes, then a 16 MiB bcast (or with --allreduce-only a 64 MiB allreduce), then close() and
// exit at once. A session fails when a rank does not print RESULT or exits non-zero; exits 1 if any did.
import { parseArgs } from 'node:util';
import { withTimeout } from './fixtures/helpers.ts';
import { finish, runRanks } from './fixtures/ranks.ts';

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '20' },
    count: { type: 'string', default: '14' },
    'timeout-ms': { type: 'string', default: '5000' },
    'allreduce-only': { type: 'boolean', default: false },
  },
});
const sessions = Number(values.sessions);
const timeoutMs = Number(values['timeout-ms']);
let failed = 0;
for (let s = 0; s < sessions; s++) {
  const started = Date.now();
  const ranks = await runRanks(4, values['allreduce-only'] ? 'soak-allreduce' : 'soak', timeoutMs, values.count);
  try {
    const codes = await withTimeout(Promise.all(ranks.map((r) => r.exited)), 60_000 + timeoutMs, 'the ranks to exit');
    const bad = ranks.flatMap((r, i) =>
      codes[i] === 0 && r.lines.some((l) => l.startsWith('RESULT'))
        ? []
        : [`rank ${i} (exit ${codes[i]}): ${r.lines.join(' | ')}`],
    );
    if (bad.length > 0) failed++;
    console.log(
      `session ${s}: ${bad.length === 0 ? 'ok' : 'FAILED'} in ${Date.now() - started} ms${bad.map((b) => `\n  ${b}`).join('')}`,
    );
  } finally {
    await finish(ranks);
  }
}
console.log(`${failed} of ${sessions} sessions failed`);
process.exit(failed === 0 ? 0 : 1);
