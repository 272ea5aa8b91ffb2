// Where the running code lives: the TypeScript sources (run through tsx) or their compiled copy under dist/
// (`npm run build`; src/bin.mjs picks it when it was built from these sources). Entry points of workers and child
// processes, and the data files next to the sources, are named here so that both layouts find them.
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const here = import.meta.filename;

/** True when this process runs the compiled JavaScript under dist/, false under tsx. */
export const COMPILED = here.endsWith('.js');

/** The package root: package.json, configs/, node_modules/, and the .ts sources. */
export const PACKAGE_ROOT = resolve(dirname(here), COMPILED ? '../..' : '..');

const CODE_ROOT = COMPILED ? join(PACKAGE_ROOT, 'dist') : PACKAGE_ROOT;

/** The file of the running code for a source path from the package root ('node-agent/training-worker.ts'). */
export function codePath(sourcePath: string): string {
  return join(CODE_ROOT, COMPILED ? sourcePath.replace(/\.ts$/, '.js') : sourcePath);
}

/** codePath as a file URL, for import() and worker entries. */
export function codeUrl(sourcePath: string): string {
  return pathToFileURL(codePath(sourcePath)).href;
}

/** The tsx loader, for `node --import` and for workers that load .ts modules. */
export const TSX_LOADER = import.meta.resolve('tsx');
export const TSX_API = import.meta.resolve('tsx/esm/api');

/** node's arguments that run a module of the project as a process: tsx is loaded only when running the sources. */
export function nodeArgsFor(sourcePath: string): string[] {
  return COMPILED ? [codePath(sourcePath)] : ['--import', TSX_LOADER, codePath(sourcePath)];
}

/**
 * The `eval` source of a worker thread that imports `entryUrl`. A worker's entry is loaded before `--import tsx`
 * hooks are active in that thread (Node 20), so where a .ts module is involved (the sources, or a .ts module the
 * entry imports, such as a test's workload), tsx is registered first.
 */
export function workerBootstrap(entryUrl: string, needsTsx = false): string {
  const load = `import(${JSON.stringify(entryUrl)})`;
  if (!needsTsx && COMPILED) return load;
  return `import(${JSON.stringify(TSX_API)}).then((tsx) => { tsx.register(); return ${load}; });`;
}
