// Debian's chromium driven by playwright-core (never a downloaded browser): used for `report --pdf` and the
// web demo's browser test. Each launch gets a fresh profile directory, removed on close.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { RenderError } from './errors.ts';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
] as const;

/** The system chromium, or null when none is installed ($CHROMIUM_PATH wins). */
export function findChromium(): string | null {
  const env = process.env['CHROMIUM_PATH'];
  if (env !== undefined && env !== '' && existsSync(env)) return env;
  return CANDIDATES.find((p) => existsSync(p)) ?? null;
}

export interface LaunchedBrowser {
  context: BrowserContext;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<LaunchedBrowser> {
  const executablePath = findChromium();
  if (executablePath === null)
    throw new RenderError(
      `chromium is not installed (looked at ${CANDIDATES.join(', ')}; set CHROMIUM_PATH, or run .ci/install-debian-packages.sh)`,
    );
  const profile = await mkdtemp(join(tmpdir(), 'pe-arena-chromium-'));
  let context: BrowserContext;
  try {
    // Playwright owns --user-data-dir: a persistent context on a fresh, temporary profile is the same thing.
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: [...CHROMIUM_FLAGS],
      timeout: 30_000,
    });
  } catch (cause) {
    await rm(profile, { recursive: true, force: true });
    throw new RenderError(
      `could not start ${executablePath}: ${cause instanceof Error ? cause.message.split('\n')[0] : String(cause)}`,
      { cause },
    );
  }
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** Prints an HTML file to PDF with the system chromium. */
export async function htmlToPdf(htmlFile: string, pdfFile: string): Promise<void> {
  const launched = await launchChromium();
  try {
    const page = await launched.context.newPage();
    await page.goto(`file://${htmlFile}`, { waitUntil: 'load', timeout: 30_000 });
    await page.pdf({
      path: pdfFile,
      format: 'A4',
      printBackground: true,
      margin: { top: '12mm', bottom: '12mm', left: '10mm', right: '10mm' },
    });
  } finally {
    await launched.close();
  }
}
