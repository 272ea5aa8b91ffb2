// `npm run build`, also run by `prepare` (so `npm ci` and `npm pack` build it): compiles the sources into dist/
// with tsconfig.build.json, then writes the stamp that src/bin.mjs checks (src/build-stamp.mjs). Where TypeScript
// is not installed (an install without dev packages) it builds nothing and says so: pe-arena then runs the sources
// through tsx.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { takeStamp, writeStamp } from './build-stamp.mjs';

const root = join(import.meta.dirname, '..');
let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  console.log('pe-arena build: typescript is not installed; nothing compiled (pe-arena runs the sources through tsx)');
  process.exit(0);
}
// Taken first: a source edited while tsc runs leaves dist/ stale, not stamped as current.
const stamp = takeStamp(root);
// From scratch: a module whose source was removed must not linger in dist/.
rmSync(join(root, 'dist'), { recursive: true, force: true });
const result = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (result.status !== 0) {
  console.error('pe-arena build: tsc failed; dist/ is not stamped, so pe-arena runs the sources through tsx');
  process.exit(result.status ?? 1);
}
writeStamp(root, stamp);
