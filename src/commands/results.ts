// `pe-arena report`, `solve` and `serve`: the results of a run for a researcher. The heavy modules (vega,
// TensorFlow.js) load only when one of these commands runs.
import { resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import type { SolveResult } from '../serve/inference.ts';
import type { BackendName } from '../train/workload.ts';

const BACKENDS = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const;

const int =
  (name: string, min: number, max: number) =>
  (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got '${value}'`);
    return n;
  };

const backendArg = (value: string): BackendName => {
  if (!(BACKENDS as readonly string[]).includes(value))
    throw new InvalidArgumentError(`backend must be one of ${BACKENDS.join(', ')}, got '${value}'`);
  return value as BackendName;
};

function fail(command: string, error: unknown): void {
  const e = error instanceof Error ? error : new Error(String(error));
  console.error(`pe-arena ${command}: ${e.message}`);
  process.exitCode = 1;
}

interface ReportFlags {
  out?: string;
  pdf: boolean;
  attention: boolean;
  resamples: number;
  seed: number;
}

interface SolveFlags {
  run: string;
  pe: string;
  backend?: BackendName;
  json: boolean;
}

interface ServeFlags {
  run: string;
  port: number;
  host: string;
  backend?: BackendName;
  maxProblemChars: number;
  quiet: boolean;
}

export function registerResultsCommands(program: Command): void {
  program
    .command('report')
    .description('write final_comparison/ of a run: comparison and statistics JSON, plots, report.html, summary.md')
    .argument('<runDir>', 'runs/<runId> (or a `pe-arena train --out` directory)')
    .option('--out <dir>', 'where to write (default <runDir>/final_comparison)')
    .option('--pdf', 'also print report.pdf with the system chromium', false)
    .option('--no-attention', 'skip the attention heatmaps (they load each final model)')
    .option('--resamples <n>', 'bootstrap resamples', int('--resamples', 10, 100_000), 1000)
    .option('--seed <n>', 'bootstrap seed', int('--seed', 0, 2 ** 31 - 1), 0)
    .action((runDir: string, flags: ReportFlags) =>
      report(runDir, flags).catch((error: unknown) => fail('report', error)),
    );

  program
    .command('solve')
    .description("answer a problem with a run's trained models: each encoding's answer, steps and latency")
    .argument('<problem>', 'e.g. "123+456" or a word problem')
    .requiredOption('--run <runDir>', 'runs/<runId> (or a `pe-arena train --out` directory)')
    .option('--pe <name>', 'one model (an encoding name) or "all"', 'all')
    .option('--backend <name>', `TF.js backend (${BACKENDS.join(', ')}); default: the best that loads`, backendArg)
    .option('--json', 'print JSON instead of text', false)
    .action((problem: string, flags: SolveFlags) =>
      solve(problem, flags).catch((error: unknown) => fail('solve', error)),
    );

  program
    .command('serve')
    .description('HTTP API (POST /solve, GET /models, GET /health) and a web demo at / for a run')
    .requiredOption('--run <runDir>', 'runs/<runId> (or a `pe-arena train --out` directory)')
    .option('--port <n>', 'port (0 picks a free one)', int('--port', 0, 65535), 8000)
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--backend <name>', `TF.js backend (${BACKENDS.join(', ')}); default: the best that loads`, backendArg)
    .option('--max-problem-chars <n>', 'longest problem accepted', int('--max-problem-chars', 1, 1_000_000), 2000)
    .option('--quiet', 'do not log each request', false)
    .action((flags: ServeFlags) => serve(flags).catch((error: unknown) => fail('serve', error)));
}

async function report(runDir: string, flags: ReportFlags): Promise<void> {
  const { writeReport } = await import('../report/index.ts');
  const summary = await writeReport(resolve(runDir), {
    ...(flags.out === undefined ? {} : { outDir: resolve(flags.out) }),
    pdf: flags.pdf,
    attention: flags.attention,
    resamples: flags.resamples,
    seed: flags.seed,
    log: (line) => console.error(line),
  });
  console.log(`report: ${summary.outDir}/report.html`);
  console.log(
    `jobs: ${summary.jobs.evaluated} of ${summary.jobs.total} evaluated${summary.jobs.missing.length > 0 ? ` (missing: ${summary.jobs.missing.join(', ')})` : ''}`,
  );
  for (const f of summary.findings) console.log(`- ${f}`);
  for (const s of summary.skipped) console.log(`not written: ${s}`);
}

async function solve(problem: string, flags: SolveFlags): Promise<void> {
  const { tfRegistry } = await import('../serve/registry.ts');
  const { solveWith } = await import('../serve/inference.ts');
  const registry = tfRegistry(resolve(flags.run), flags.backend);
  try {
    registry.refresh();
    const names = flags.pe === 'all' ? registry.names() : [flags.pe];
    if (names.length === 0)
      throw new Error(`${flags.run} has no trained models (no final_model/ or checkpoints/ in its jobs)`);
    const out: unknown[] = [];
    for (const name of names) {
      try {
        const r = solveWith(await registry.get(name), problem);
        out.push(r);
        if (!flags.json) printSolveResult(r, problem);
      } catch (error) {
        if (flags.pe !== 'all') throw error;
        const message = error instanceof Error ? error.message : String(error);
        out.push({ model: name, error: message });
        if (!flags.json) console.log(`${name.padEnd(12)} error: ${message}`);
      }
    }
    if (flags.json) console.log(JSON.stringify(out, null, 2));
  } finally {
    registry.dispose();
  }
}

function printSolveResult(r: SolveResult, problem: string): void {
  console.log(
    `${r.model.padEnd(12)} ${r.answer === '' ? '(no answer)' : r.answer}   ${r.latencyMs.toFixed(1)} ms, ${r.generatedTokens} tokens`,
  );
  // The model's own format (padding, reversal) when it differs from what was typed; the answer is in ordinary order.
  const typed = problem.replace(/\s+/g, '').replace(/=*$/, '=');
  if (r.prompt !== typed && !r.prompt.includes('\n'))
    console.log(`${''.padEnd(12)}   as trained: ${r.prompt}${r.prediction}`);
  for (const s of r.steps) console.log(`${''.padEnd(12)}   ${s.correct ? '✓' : '✗'} ${s.text}`);
  if (r.prediction.includes('\n')) console.log(r.prediction.replace(/^/gm, `${''.padEnd(12)} | `));
}

async function serve(flags: ServeFlags): Promise<void> {
  const { tfRegistry } = await import('../serve/registry.ts');
  const { startServer } = await import('../serve/server.ts');
  const { ensureBackend } = await import('../serve/inference.ts');
  const runDir = resolve(flags.run);
  const registry = tfRegistry(runDir, flags.backend);
  registry.refresh();
  await ensureBackend(flags.backend, (line) => console.error(line));
  const running = await startServer(
    {
      registry,
      runDir,
      maxProblemChars: flags.maxProblemChars,
      ...(flags.quiet ? {} : { log: (line: string) => console.error(line) }),
    },
    flags.port,
    flags.host,
  );
  console.log(
    `serving ${registry.names().length} model(s) (${registry.names().join(', ') || 'none yet'}) at ${running.url}/`,
  );
  const stop = (signal: string): void => {
    console.error(`${signal}: closing`);
    void running.close().then(() => {
      registry.dispose();
      process.exit(0);
    });
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}
