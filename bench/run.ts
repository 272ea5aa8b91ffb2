// `npm run bench -- <suite>`: runs bench/<suite>.ts, prints its table and writes bench/results/<suite>.json.
// A suite module exports `run(args: string[]): Promise<Record<string, unknown>>`; flat numeric fields print as rows.
// A part of a suite (`--only <part>`) writes bench/results/<suite>-<part>.json, leaving the full run's file alone.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import os from 'node:os';

const [suite, ...args] = process.argv.slice(2);
if (!suite || !/^[a-z][a-z0-9-]*$/.test(suite)) {
  console.error(
    'usage: npm run bench -- <suite> (protocol | model | runtime | launch | startup | serve | positions | parallel | kernels)',
  );
  process.exit(2);
}
const mod = (await import(`./${suite}.ts`)) as { run: (args: string[]) => Promise<Record<string, unknown>> };
const started = new Date().toISOString();
const results = await mod.run(args);
const record = {
  suite,
  started,
  machine: {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
  },
  results,
};
await mkdir(join(import.meta.dirname, 'results'), { recursive: true });
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
const name = only !== undefined && /^[a-z][a-z0-9-]*$/.test(only) ? `${suite}-${only}` : suite;
const file = join(import.meta.dirname, 'results', `${name}.json`);
await writeFile(file, JSON.stringify(record, null, 2) + '\n');
console.table(Object.fromEntries(Object.entries(results).filter(([, v]) => typeof v !== 'object')));
console.log(`wrote ${file}`);
process.exit(0);
