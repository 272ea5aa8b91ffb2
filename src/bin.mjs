#!/usr/bin/env node
// The pe-arena command. Runs the compiled CLI under dist/ when dist/ was built from exactly these sources (see
// build-stamp.mjs), else the TypeScript through tsx: no compiler at start-up after `npm ci`, and never a stale
// dist/ after an edit.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { distIsCurrent } from './build-stamp.mjs';

const root = join(import.meta.dirname, '..');
const compiled = distIsCurrent(root);
if (!compiled) (await import('tsx/esm/api')).register();
const code = (source) =>
  pathToFileURL(compiled ? join(root, 'dist', source.replace(/\.ts$/, '.js')) : join(root, source)).href;

// Job scripts set PE_ARENA_WALLTIME_PRELOAD=1: the walltime drain is armed before the CLI loads.
if (process.env.PE_ARENA_WALLTIME_PRELOAD === '1') await import(code('node-agent/walltime.ts'));
await import(code('src/cli.ts'));
