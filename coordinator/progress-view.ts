// Live progress. renderFrame/renderPlainLines are pure functions of a snapshot (unit-tested); ProgressView owns
// the timer and the terminal: on a TTY it redraws in place (cursor up + clear line, one write per frame, ~4 fps);
// otherwise it prints one plain line per job every N seconds, and events as they happen.
import type { AgentStatus, JobStatus } from '../protocol/messages.ts';
import type { Clock, TimerHandle } from '../protocol/clock.ts';
import { systemClock } from '../protocol/clock.ts';
import type { CoordinatorEvent } from './context.ts';
import { displayJobId } from './experiment.ts';

export interface ViewRow extends JobStatus {
  /** agent@host, or '' when not placed. */
  where: string;
  suspect: boolean;
  heartbeatAgeMs?: number;
  /** Seconds to go at the recent step rate; undefined when unknown. */
  etaS?: number;
  /** The loss over the last LOSS_WINDOW_STEPS steps, oldest first, as a sparkline ('' until there are two samples). */
  lossTrend?: string;
}

/** How many recent steps the loss sparkline covers, and in how many characters. */
export const LOSS_WINDOW_STEPS = 300;
export const SPARKLINE_WIDTH = 16;
const SPARK = '▁▂▃▄▅▆▇█';

/**
 * Values as block characters scaled between their min and max, one per value: a stalled job reads flat, a
 * diverging one climbs, and a non-finite loss shows as '!' so NaN is visible at a glance.
 */
export function sparkline(values: readonly number[]): string {
  const finite = values.filter(Number.isFinite);
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  return values
    .map((v) => {
      if (!Number.isFinite(v)) return '!';
      const level = hi > lo ? Math.round(((v - lo) / (hi - lo)) * (SPARK.length - 1)) : 0;
      return SPARK[level] ?? SPARK[0];
    })
    .join('');
}

/** Loss samples (step, loss) as at most `width` bucket means over the steps they span, oldest first. */
export function bucketLoss(samples: readonly { step: number; loss: number }[], width = SPARKLINE_WIDTH): number[] {
  if (samples.length === 0) return [];
  const first = samples[0]?.step ?? 0;
  const span = (samples[samples.length - 1]?.step ?? first) - first + 1;
  const buckets = Math.min(width, samples.length);
  const sums = new Array<number>(buckets).fill(0);
  const counts = new Array<number>(buckets).fill(0);
  for (const { step, loss } of samples) {
    const b = Math.min(buckets - 1, Math.floor(((step - first) / span) * buckets));
    sums[b] = (sums[b] ?? 0) + loss;
    counts[b] = (counts[b] ?? 0) + 1;
  }
  const out: number[] = [];
  for (let b = 0; b < buckets; b++) if ((counts[b] ?? 0) > 0) out.push((sums[b] ?? 0) / (counts[b] ?? 1));
  return out;
}

export interface ViewSnapshot {
  experiment: string;
  runId: string;
  now: number;
  startedAt: number;
  rows: ViewRow[];
  agents: AgentStatus[];
  events: CoordinatorEvent[];
}

const ESC = '\x1b[';

export function buildRows(
  jobs: JobStatus[],
  agents: AgentStatus[],
  rates: Map<string, number>,
  losses: ReadonlyMap<string, readonly { step: number; loss: number }[]> = new Map(),
): ViewRow[] {
  const byId = new Map(agents.map((a) => [a.agentId as string, a]));
  return jobs.map((j) => {
    const a = j.agentId === undefined ? undefined : byId.get(j.agentId);
    const row: ViewRow = {
      ...j,
      where:
        j.gang !== undefined && (j.state === 'running' || j.state === 'assigned')
          ? `${j.gang.members.length} ranks (gen ${j.gang.generation}): ${j.gang.members.join(' ')}`
          : a
            ? `${a.agentId}@${a.host}`
            : (j.agentId ?? ''),
      suspect: a?.state === 'suspect',
    };
    if (a) row.heartbeatAgeMs = a.lastHeartbeatAgoMs;
    const rate = rates.get(j.jobId);
    if (rate !== undefined && rate > 0 && (j.state === 'running' || j.state === 'assigned'))
      row.etaS = (j.totalSteps - j.step) / rate;
    const trend = bucketLoss(losses.get(j.jobId) ?? []);
    if (trend.length >= 2) row.lossTrend = sparkline(trend);
    return row;
  });
}

/** The whole TTY frame as lines (no escape codes), fitted to `width` columns. */
export function renderFrame(s: ViewSnapshot, width = 120, maxEvents = 8): string[] {
  const counts = new Map<string, number>();
  for (const r of s.rows) counts.set(r.state, (counts.get(r.state) ?? 0) + 1);
  const summary = ['running', 'assigned', 'evaluating', 'pending', 'done', 'failed']
    .filter((k) => (counts.get(k) ?? 0) > 0)
    .map((k) => `${counts.get(k)} ${k}`)
    .join(', ');
  const suspects = s.agents.filter((a) => a.state === 'suspect').map((a) => a.agentId);
  const lines: string[] = [
    `pe-arena ${s.experiment}  run ${s.runId}  ${fmtDuration((s.now - s.startedAt) / 1000)}  ${s.agents.length} agents  ${summary}` +
      (suspects.length > 0 ? `  SUSPECT: ${suspects.join(', ')}` : ''),
  ];
  const header = ['job', 'agent', 'state', 'progress', 'step', 'loss', 'trend', 'acc', 'tok/s', 'ETA', 'hb'];
  const table = s.rows.map((r) => [
    displayJobId(r.jobId),
    r.where === '' ? '-' : r.where,
    r.suspect ? `${r.state}?` : r.state,
    bar(r.totalSteps === 0 ? 0 : r.step / r.totalSteps, 20),
    `${r.step}/${r.totalSteps}`,
    r.loss === undefined ? '-' : r.loss.toFixed(3),
    r.lossTrend ?? '-',
    r.accuracy === undefined ? '-' : `${(r.accuracy * 100).toFixed(0)}%`,
    r.tokensPerSecond === undefined ? '-' : r.tokensPerSecond.toFixed(0),
    r.etaS === undefined ? '-' : fmtDuration(r.etaS),
    r.heartbeatAgeMs === undefined ? '-' : `${(r.heartbeatAgeMs / 1000).toFixed(1)}s${r.suspect ? '!' : ''}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => (row[i] ?? '').length)));
  const fmt = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join(' ')
      .trimEnd();
  lines.push(fmt(header), ...table.map(fmt));
  const recent = s.events.slice(-maxEvents);
  if (recent.length > 0) {
    lines.push('events:');
    for (const e of recent) lines.push(`  ${clock(e.time)} ${e.text}`);
  }
  return lines.map((l) => (l.length > width ? l.slice(0, Math.max(1, width - 1)) + '…' : l));
}

/** Non-TTY: one line per job. */
export function renderPlainLines(s: ViewSnapshot): string[] {
  return s.rows.map((r) => {
    const parts = [`[${clock(s.now)}]`, displayJobId(r.jobId), r.suspect ? `${r.state} (agent suspect)` : r.state];
    if (r.where !== '') parts.push(`on ${r.where}`);
    parts.push(`step ${r.step}/${r.totalSteps}`);
    if (r.loss !== undefined)
      parts.push(`loss ${r.loss.toFixed(3)}${r.lossTrend === undefined ? '' : ` ${r.lossTrend}`}`);
    if (r.accuracy !== undefined) parts.push(`acc ${(r.accuracy * 100).toFixed(0)}%`);
    if (r.tokensPerSecond !== undefined) parts.push(`${r.tokensPerSecond.toFixed(0)} tok/s`);
    if (r.etaS !== undefined) parts.push(`ETA ${fmtDuration(r.etaS)}`);
    return parts.join(' ');
  });
}

/** What the terminal receives for one TTY frame: cursor up over the last frame, each line cleared and rewritten. */
export function frameBytes(lines: string[], previousLineCount: number): string {
  let out = previousLineCount > 0 ? `${ESC}${previousLineCount}A` : '';
  for (const l of lines) out += `\r${ESC}2K${l}\n`;
  // A shorter frame than the last leaves stale lines below: clear to the end of the screen.
  if (lines.length < previousLineCount) out += `${ESC}J`;
  return out;
}

export interface ProgressSource {
  snapshot(): { experiment: string; runId: string; jobs: JobStatus[]; agents: AgentStatus[] };
  readonly events: CoordinatorEvent[];
}

export interface ProgressViewOptions {
  out?: NodeJS.WriteStream | { write(s: string): boolean; isTTY?: boolean; columns?: number };
  clock?: Clock;
  /** TTY redraw period (default 250 ms, ~4 fps). */
  frameMs?: number;
  /** Non-TTY: seconds between job lines (default 10). */
  plainEverySec?: number;
}

export class ProgressView {
  private readonly out: NonNullable<ProgressViewOptions['out']>;
  private readonly clock: Clock;
  private readonly tty: boolean;
  private timer: TimerHandle | undefined;
  private lastLines = 0;
  private readonly startedAt: number;
  private readonly history = new Map<string, { t: number; step: number }[]>();
  /** (step, loss) as sampled at each frame, over the last LOSS_WINDOW_STEPS steps of each job. */
  private readonly losses = new Map<string, { step: number; loss: number }[]>();

  constructor(
    private readonly source: ProgressSource,
    private readonly options: ProgressViewOptions = {},
  ) {
    this.out = options.out ?? process.stdout;
    this.clock = options.clock ?? systemClock;
    this.tty = this.out.isTTY === true;
    this.startedAt = this.clock.now();
  }

  start(): void {
    const every = this.tty ? (this.options.frameMs ?? 250) : (this.options.plainEverySec ?? 10) * 1000;
    if (this.tty) this.out.write(`${ESC}?25l`);
    this.timer = this.clock.setInterval(() => this.draw(), every);
    if (!this.tty) this.timer2 = this.clock.setInterval(() => this.printEvents(), 500);
    this.draw();
  }

  private timer2: TimerHandle | undefined;

  /** Final frame, cursor back. */
  stop(): void {
    this.clock.clearInterval(this.timer);
    this.clock.clearInterval(this.timer2);
    this.draw();
    if (this.tty) this.out.write(`${ESC}?25h`);
  }

  snapshot(): ViewSnapshot {
    const s = this.source.snapshot();
    const now = this.clock.now();
    const rates = new Map<string, number>();
    for (const j of s.jobs) {
      let h = this.history.get(j.jobId) ?? [];
      // Start measuring at the first step seen after (re)assignment: model set-up time is not a step rate.
      if (j.state !== 'running' || (h.length > 0 && (h[h.length - 1]?.step ?? 0) > j.step)) h = [];
      else if (h.length === 0 || h[h.length - 1]?.step !== j.step) h.push({ t: now, step: j.step });
      while (h.length > 2 && now - (h[0]?.t ?? now) > 30_000) h.shift();
      this.history.set(j.jobId, h);
      const first = h[0];
      const last = h[h.length - 1];
      if (first && last && last.t > first.t && last.step > first.step)
        rates.set(j.jobId, ((last.step - first.step) * 1000) / (last.t - first.t));
      this.sampleLoss(j);
    }
    return {
      experiment: s.experiment,
      runId: s.runId,
      now,
      startedAt: this.startedAt,
      rows: buildRows(s.jobs, s.agents, rates, this.losses),
      agents: s.agents,
      events: this.source.events.slice(-20),
    };
  }

  private sampleLoss(j: JobStatus): void {
    if (j.loss === undefined) return;
    // A job that resumed from a checkpoint goes back in steps: what came after the checkpoint is redone.
    const kept = (this.losses.get(j.jobId) ?? []).filter((p) => p.step < j.step && p.step > j.step - LOSS_WINDOW_STEPS);
    kept.push({ step: j.step, loss: j.loss });
    this.losses.set(j.jobId, kept);
  }

  private draw(): void {
    try {
      const snap = this.snapshot();
      if (this.tty) {
        // A pty without a size reports 0 columns; fall back to a common width. One column spare so no line wraps
        // (a wrapped line would throw off the cursor-up count).
        const cols = (this.out as { columns?: number }).columns ?? 0;
        const width = cols >= 20 ? cols - 1 : 120;
        const lines = renderFrame(snap, width);
        this.out.write(frameBytes(lines, this.lastLines));
        this.lastLines = lines.length;
      } else {
        this.printEvents();
        this.out.write(renderPlainLines(snap).join('\n') + '\n');
      }
    } catch {
      // Drawing must never take the coordinator down.
    }
  }

  private printEvents(): void {
    const all = this.source.events;
    const i = this.lastEvent === undefined ? -1 : all.lastIndexOf(this.lastEvent);
    for (const e of all.slice(i + 1)) this.out.write(`[${clock(e.time)}] ${e.text}\n`);
    this.lastEvent = all.at(-1) ?? this.lastEvent;
  }

  private lastEvent: CoordinatorEvent | undefined;
}

function bar(frac: number, width: number): string {
  const f = Math.min(1, Math.max(0, Number.isFinite(frac) ? frac : 0));
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

export function fmtDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function clock(t: number): string {
  return new Date(t).toISOString().slice(11, 19);
}
