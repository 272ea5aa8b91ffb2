// Types of build-stamp.mjs (plain JavaScript: src/bin.mjs loads it before any TypeScript can run).
export interface BuildStamp {
  files: string[];
  sha256: string;
}
export const STAMP_FILE: string;
export function takeStamp(root: string): BuildStamp;
export function writeStamp(root: string, stamp: BuildStamp): void;
export function distIsCurrent(root: string): boolean;
