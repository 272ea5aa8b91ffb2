// The files the server hands out as they are: the demo page and its assets, and the run's report.html.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../protocol/code-paths.ts';
import { sendJson } from './http-io.ts';

// From the package root: the compiled code under dist/ has no copy of static/.
const STATIC_DIR = join(PACKAGE_ROOT, 'src', 'serve', 'static');

/** URL path -> file in static/. */
export const STATIC_FILES: Readonly<Record<string, string>> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/app.js': 'app.js',
  '/style.css': 'style.css',
};

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

export async function sendStaticFile(res: ServerResponse, asset: string): Promise<void> {
  const body = await readFile(join(STATIC_DIR, asset));
  res.writeHead(200, {
    'content-type': TYPES[asset.split('.').pop() as string] ?? 'application/octet-stream',
    'content-length': body.length,
    'cache-control': 'no-store',
  });
  res.end(body);
}

/** GET /report: final_comparison/report.html, or 404 saying how to write it. */
export async function sendReport(res: ServerResponse, runDir: string): Promise<void> {
  const file = join(runDir, 'final_comparison', 'report.html');
  if (!existsSync(file)) {
    sendJson(res, 404, {
      error: { name: 'NotFound', message: `no report yet: run \`pe-arena report ${runDir}\`` },
    });
    return;
  }
  const html = await readFile(file);
  res.writeHead(200, { 'content-type': TYPES['html'] as string, 'content-length': html.length });
  res.end(html);
}
