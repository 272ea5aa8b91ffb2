#!/usr/bin/env node
// Thin launcher: runs the TypeScript entry point through tsx, so the bin works without a build step.
import { register } from 'tsx/esm/api';
register();
await import('./cli.ts');
