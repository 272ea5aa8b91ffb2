// The web demo in Debian's chromium (driven by playwright-core, never a downloaded browser): type a problem,
// see every encoding's answer render, the heatmap drawn and the live progress table filled; save a screenshot.
// Skipped, with the reason, only when chromium is not installed (.ci/install-debian-packages.sh installs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findChromium, launchChromium } from '../../src/report/browser.ts';
import { tfRegistry } from '../../src/serve/registry.ts';
import { startServer } from '../../src/serve/server.ts';
import { decodePng, tempRunDir } from '../report/fixtures.ts';
import { postJson, writeModelRun } from './helpers.ts';

const chromium = findChromium();

void test(
  'web demo: type a problem, every encoding answers side by side',
  {
    skip: chromium === null ? 'chromium is not installed (run .ci/install-debian-packages.sh)' : false,
    timeout: 90_000,
  },
  async (t) => {
    const dir = await tempRunDir(t, 'pe-arena-demo-');
    const registry = tfRegistry(dir, 'cpu');
    t.after(() => registry.dispose());
    await writeModelRun(dir, ['rope', 'alibi']);
    registry.refresh();
    const server = await startServer({ registry, runDir: dir, progressIntervalMs: 100 });
    t.after(() => server.close());
    const expected = await postJson(`${server.url}/solve`, { problem: '12+34', model_type: 'all' });
    const answers = new Map(
      (expected.json['results'] as { model: string; answer: string }[]).map((r) => [r.model, r.answer]),
    );
    const browser = await launchChromium();
    t.after(() => browser.close());
    const page = await browser.context.newPage();
    page.setDefaultTimeout(30_000);
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${server.url}/`);
    await page.locator('#model option[value="rope"]').waitFor({ state: 'attached' });
    await page.fill('#problem', '12+34');
    await page.click('#solve');
    await page.locator('.result-card').nth(1).waitFor();
    const cards = await page.locator('.result-card').evaluateAll((els) =>
      els.map((e) => ({
        model: e.getAttribute('data-model'),
        answer: e.querySelector('.answer')?.textContent ?? '',
      })),
    );
    assert.deepEqual(cards.map((c) => c.model).sort(), ['alibi', 'rope']);
    for (const c of cards) {
      const want = answers.get(c.model ?? '');
      assert.equal(c.answer, want === '' ? '(no answer)' : want, `${c.model}`);
    }
    assert.match((await page.textContent('#status')) ?? '', /2 answer\(s\)/);
    // The heatmap is drawn after the answers: wait until the canvas has a non-white pixel in its grid area.
    // A string expression: this project's TypeScript has no DOM types, the page has.
    await page.waitForFunction(`(() => {
      const d = document.getElementById('heatmap').getContext('2d').getImageData(44, 44, 20, 20).data;
      return d.some((v, i) => i % 4 !== 3 && v < 250);
    })()`);
    await page.locator('#progress tbody tr').nth(1).waitFor();
    const shot = join(tmpdir(), 'pe-arena-demo-screenshot.png');
    await page.screenshot({ path: shot, fullPage: true });
    const { width, height } = await decodePng(await readFile(shot));
    assert.ok(width > 300 && height > 300);
    t.diagnostic(`screenshot: ${shot}`);
    assert.deepEqual(pageErrors, []);
  },
);
