// Ties dist/ to the sources it was compiled from. The build records the files tsc read (the .ts sources and the
// tsconfigs) and a sha256 of their paths and bytes; src/bin.mjs runs dist/ only when that hash still holds, so an
// edited, renamed or deleted source never runs as a stale compiled copy. A file added since the build needs no
// check: nothing compiled can import it without a listed file changing.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const SOURCE_DIRS = ['protocol', 'coordinator', 'node-agent', 'src'];
const CONFIG_FILES = ['tsconfig.json', 'tsconfig.build.json'];
export const STAMP_FILE = join('dist', 'build-stamp.json');

/** The files a build reads, relative to root, sorted. */
function sourceFiles(root) {
  const files = SOURCE_DIRS.flatMap((dir) =>
    readdirSync(join(root, dir), { recursive: true })
      .filter((f) => f.endsWith('.ts'))
      .map((f) => join(dir, f)),
  );
  return [...CONFIG_FILES, ...files.sort()];
}

/** Throws when a listed file is gone. */
function digest(root, files) {
  const hash = createHash('sha256');
  for (const file of files)
    hash
      .update(`${file}\0`)
      .update(readFileSync(join(root, file)))
      .update('\0');
  return hash.digest('hex');
}

/** The stamp of the sources as they are now: taken before compiling, written after. */
export function takeStamp(root) {
  const files = sourceFiles(root);
  return { files, sha256: digest(root, files) };
}

export function writeStamp(root, stamp) {
  writeFileSync(join(root, STAMP_FILE), `${JSON.stringify(stamp)}\n`);
}

/** True when dist/ holds a build of exactly the sources under root. */
export function distIsCurrent(root) {
  try {
    const stamp = JSON.parse(readFileSync(join(root, STAMP_FILE), 'utf8'));
    return Array.isArray(stamp.files) && stamp.sha256 === digest(root, stamp.files);
  } catch {
    return false;
  }
}
