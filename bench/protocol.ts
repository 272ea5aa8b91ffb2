// `npm run bench -- protocol [--quick] [--only messages|allreduce]`: the wire stack against raw zeromq.js, side by
// side in one run.
// - metrics_msgs_per_s: encode, send, receive, validate (ZmqClient in a child process -> ZmqServer here), the
//   sender streaming (messages that queue up share frames), and metrics_one_by_one_msgs_per_s with every send
//   awaited (a frame per message), vs raw_msgs_per_s: PUSH (child) -> PULL (here) of the same bytes, encoded once
// - rtt_p50_us / rtt_p99_us: lockstep heartbeat -> heartbeat_ack, vs raw_rtt_p50_us: raw DEALER/ROUTER, same bytes
// - allreduce_MBps: ring allreduce bus bandwidth (size/time x 2(n-1)/n) for 2 and 4 ranks as separate processes,
//   vs raw_bulk_MBps: raw PUSH/PULL of 1 MiB frames between two processes
// - checkpoint_MBps: 256 MiB as 1 MiB checkpoint_chunk messages, each acknowledged, a window of 4 in flight; median
//   of three transfers after a first, cold one (checkpoint_first_MBps)
// This file is also the child process for the multi-process parts (argv[2] === '--child').
import { spawn } from 'node:child_process';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as zmq from 'zeromq';
import { Communicator } from '../protocol/communicator.ts';
import { encode } from '../protocol/codec.ts';
import { bindServer, connectClient } from '../protocol/zmq-transport.ts';
import { METRIC_COLUMNS } from '../protocol/messages.ts';
import type { CheckpointChunk, Metrics } from '../protocol/messages.ts';

const SELF = fileURLToPath(import.meta.url);
const KiB = 1024;
const MiB = 1024 * 1024;
const jobId = 'bench-job' as Metrics['jobId'];

// A full garbage collection before each measured run, raw and ours alike, so that none pays for the garbage of the
// one before: the round trips used to follow the throughput runs' ~150,000 decoded messages, and a process still
// sweeping those answered 20-40 us slower (raw too). gc() is exposed for this process only.
v8.setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

/** A realistic batch: 10 steps' worth of numbers, written straight into columns as a producer would. */
function benchMetrics(i: number): Metrics {
  const n = 10;
  const columns = new Float64Array(n * METRIC_COLUMNS.length);
  for (let k = 0; k < n; k++) {
    columns[k] = i * n + k; // step
    columns[n + k] = 1.234; // loss
    columns[2 * n + k] = 0.001; // learningRate
    columns[3 * n + k] = 0.5; // gradNorm
    columns[4 * n + k] = 12345; // tokensPerSecond
    columns[5 * n + k] = 1700000000000 + k; // time
    columns[6 * n + k] = 0.5; // accuracy
  }
  return { type: 'metrics', jobId, epoch: 1, columns };
}

const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;
const median = (xs: number[]): number =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );

/** Full stack: a child process encodes and sends through ZmqClient; here ZmqServer receives, decodes, validates. */
async function fullStackMessages(count: number, mode: 'stream' | 'one-by-one'): Promise<number> {
  collectGarbage();
  const server = await bindServer({ address: 'tcp://127.0.0.1:0', highWaterMark: 10_000 });
  const sender = startChild(['send-full', server.address, String(count), mode]);
  try {
    const iterator = server.inbound()[Symbol.asyncIterator]();
    await iterator.next(); // warm-up message, not timed
    const started = performance.now();
    for (let i = 0; i < count; i++) {
      const next = await iterator.next();
      if (next.done === true || next.value.kind !== 'message') throw new Error('bench: lost a message');
    }
    return count / ((performance.now() - started) / 1000);
  } finally {
    sender.kill();
    await server.close();
  }
}

/** Raw: a child process sends the same bytes, encoded up front, over PUSH; here PULL receives them. */
async function rawMessages(count: number): Promise<number> {
  collectGarbage();
  const pull = new zmq.Pull({ linger: 0, receiveHighWaterMark: 10_000 });
  await pull.bind('tcp://127.0.0.1:0');
  const sender = startChild(['send-raw', pull.lastEndpoint!, String(count)]);
  try {
    await pull.receive();
    const started = performance.now();
    for (let i = 0; i < count; i++) await pull.receive();
    return count / ((performance.now() - started) / 1000);
  } finally {
    sender.kill();
    pull.close();
  }
}

async function roundTrips(count: number): Promise<{ p50: number; p99: number }> {
  collectGarbage();
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const client = await connectClient({ address: server.address, routingId: 'rtt' });
  const serving = (async () => {
    for await (const item of server.inbound()) {
      if (item.kind === 'message' && item.message.type === 'heartbeat') {
        await server.send(item.from, { type: 'heartbeat_ack', seq: item.message.seq, time: Date.now() });
      }
    }
  })();
  const replies = client.inbound()[Symbol.asyncIterator]();
  const samples: number[] = [];
  try {
    for (let i = 0; i < count + 200; i++) {
      const started = performance.now();
      await client.send({ type: 'heartbeat', agentId: 'rtt' as never, seq: i, time: Date.now(), state: 'idle' });
      const reply = await replies.next();
      if (reply.done === true) throw new Error('bench: connection closed');
      if (i >= 200) samples.push((performance.now() - started) * 1000); // the first 200 warm up
    }
  } finally {
    await client.close();
    await server.close();
    await serving;
  }
  samples.sort((a, b) => a - b);
  return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

/** The same lockstep over raw zeromq.js DEALER -> ROUTER with the same bytes, encoded once: the floor for rtt. */
async function rawRoundTrips(count: number): Promise<{ p50: number; p99: number }> {
  collectGarbage();
  const router = new zmq.Router({ linger: 0 });
  await router.bind('tcp://127.0.0.1:0');
  const dealer = new zmq.Dealer({ linger: 0, routingId: 'rtt' });
  dealer.connect(router.lastEndpoint!);
  const request = encode({ type: 'heartbeat', agentId: 'rtt' as never, seq: 1, time: Date.now(), state: 'idle' });
  const reply = encode({ type: 'heartbeat_ack', seq: 1, time: Date.now() });
  const serving = (async () => {
    for (;;) {
      let from: Buffer | undefined;
      try {
        [from] = await router.receive();
      } catch {
        return; // closed
      }
      await router.send([from!, reply]);
    }
  })();
  const samples: number[] = [];
  try {
    for (let i = 0; i < count + 200; i++) {
      const started = performance.now();
      await dealer.send(request);
      await dealer.receive();
      if (i >= 200) samples.push((performance.now() - started) * 1000);
    }
  } finally {
    dealer.close();
    router.close();
    await serving;
  }
  samples.sort((a, b) => a - b);
  return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

/** MB/s of each of `rounds` transfers over one connection; the first is cold (JIT, fresh buffers). */
async function checkpointTransfer(
  totalBytes: number,
  chunkBytes: number,
  window: number,
  rounds: number,
): Promise<number[]> {
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const client = await connectClient({ address: server.address, routingId: 'ckpt' });
  const count = Math.ceil(totalBytes / chunkBytes);
  const blob = new Uint8Array(chunkBytes).map((_, i) => i & 0xff);
  let received = 0;
  const serving = (async () => {
    for await (const item of server.inbound()) {
      if (item.kind !== 'message' || item.message.type !== 'checkpoint_chunk') continue;
      received += item.message.data.byteLength;
      const m = item.message;
      await server.send(item.from, {
        type: 'checkpoint_ack',
        jobId: m.jobId,
        epoch: m.epoch,
        checkpointId: m.checkpointId,
        ok: true,
      });
    }
  })();
  const acks = client.inbound()[Symbol.asyncIterator]();
  const chunk = (index: number): CheckpointChunk => ({
    type: 'checkpoint_chunk',
    jobId,
    epoch: 1,
    checkpointId: 'bench-ckpt' as CheckpointChunk['checkpointId'],
    kind: 'checkpoint',
    step: 1,
    index,
    count,
    totalBytes,
    sha256: '0'.repeat(64),
    data: blob,
  });
  try {
    const rates: number[] = [];
    for (let round = 0; round < rounds; round++) {
      collectGarbage();
      received = 0;
      const started = performance.now();
      let sent = 0;
      let acked = 0;
      while (acked < count) {
        while (sent < count && sent - acked < window) await client.send(chunk(sent++));
        const ack = await acks.next();
        if (ack.done === true) throw new Error('bench: connection closed');
        acked++;
      }
      const seconds = (performance.now() - started) / 1000;
      if (received !== count * chunkBytes) throw new Error(`bench: server got ${received} bytes`);
      rates.push(totalBytes / MiB / seconds);
    }
    return rates;
  } finally {
    await client.close();
    await server.close();
    await serving;
  }
}

// --- multi-process parts --------------------------------------------------------------------------

interface Child {
  lines: AsyncIterator<string>;
  exited: Promise<number | null>;
  kill(): void;
}

function startChild(args: string[]): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--child', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { lines, exited, kill: () => child.kill('SIGKILL') };
}

async function nextLine(child: Child, prefix: string): Promise<string> {
  for (;;) {
    const next = await child.lines.next();
    if (next.done === true) throw new Error(`bench child exited before printing ${prefix}`);
    if (next.value.startsWith(prefix)) return next.value.slice(prefix.length + 1);
  }
}

async function allreduceBandwidth(ranks: number, sizes: number[]): Promise<Record<string, number>> {
  const root = startChild(['rank', '0', String(ranks), 'tcp://127.0.0.1:0', sizes.join(',')]);
  const children = [root];
  try {
    const address = await nextLine(root, 'ADDRESS');
    for (let r = 1; r < ranks; r++)
      children.push(startChild(['rank', String(r), String(ranks), address, sizes.join(',')]));
    const result = JSON.parse(await nextLine(root, 'RESULT')) as Record<string, number>;
    await Promise.all(children.map((c) => c.exited));
    return result;
  } finally {
    for (const c of children) c.kill();
  }
}

async function rawBulk(totalBytes: number, frameBytes: number): Promise<number> {
  const push = new zmq.Push({ linger: 0, sendHighWaterMark: 64 });
  await push.bind('tcp://127.0.0.1:0');
  const child = startChild(['pull', push.lastEndpoint!, String(totalBytes / frameBytes)]);
  try {
    await nextLine(child, 'READY');
    const frame = new Uint8Array(frameBytes).fill(7);
    await push.send(frame); // warm-up frame, not timed by the child
    const count = totalBytes / frameBytes;
    for (let i = 0; i < count; i++) await push.send(frame);
    return Number(await nextLine(child, 'RESULT'));
  } finally {
    push.close();
    child.kill();
  }
}

async function child(args: string[]): Promise<void> {
  const [role, ...rest] = args;
  if (role === 'send-full') {
    const [address, countText, mode] = rest;
    const client = await connectClient({
      address: address!,
      routingId: 'bench',
      highWaterMark: 10_000,
      sendTimeoutMs: 60_000,
    });
    // 'stream': as the agent sends, without waiting for one message before the next (every 256th is awaited, which
    // bounds what is in flight); messages that queue up behind the socket share frames. 'one-by-one': each send is
    // awaited before the next, so every message is a frame of its own.
    const stream = mode === 'stream';
    for (let i = 0; i <= Number(countText); i++) {
      const sent = client.send(benchMetrics(i));
      if (!stream || i % 256 === 255) await sent;
    }
    await new Promise((resolve) => setTimeout(resolve, 60_000)); // stay until the parent has them all and kills us
    return;
  }
  if (role === 'send-raw') {
    const [address, countText] = rest;
    const push = new zmq.Push({ linger: 0, sendHighWaterMark: 10_000, sendTimeout: 60_000 });
    push.connect(address!);
    const frames = Array.from({ length: 100 }, (_, i) => encode(benchMetrics(i)));
    for (let i = 0; i <= Number(countText); i++) await push.send(frames[i % frames.length]!);
    await new Promise((resolve) => setTimeout(resolve, 60_000));
    return;
  }
  if (role === 'pull') {
    const [address, countText] = rest;
    const pull = new zmq.Pull({ linger: 0, receiveHighWaterMark: 64 });
    pull.connect(address!);
    console.log('READY');
    await pull.receive();
    const count = Number(countText);
    const started = performance.now();
    let bytes = 0;
    for (let i = 0; i < count; i++) bytes += (await pull.receive())[0]!.byteLength;
    console.log(`RESULT ${bytes / MiB / ((performance.now() - started) / 1000)}`);
    pull.close();
    return;
  }
  const [rankText, sizeText, rootAddress, sizesText] = rest;
  const rank = Number(rankText);
  const n = Number(sizeText);
  const comm = await Communicator.create({
    rank,
    size: n,
    rootAddress: rootAddress!,
    timeoutMs: 60_000,
    onListening: (address) => {
      if (rank === 0) console.log(`ADDRESS ${address}`);
    },
  });
  const result: Record<string, number> = {};
  for (const bytes of sizesText!.split(',').map(Number)) {
    const data = new Float32Array(bytes / 4).fill(rank + 1);
    const iterations = Math.max(5, Math.min(200, Math.floor((256 * MiB) / bytes)));
    await comm.allreduce(data, 'sum', { inPlace: true }); // warm-up
    // Each iteration starts together on every rank; the median iteration stands for the size (the machine is shared).
    const times: number[] = [];
    for (let i = 0; i < iterations; i++) {
      await comm.barrier();
      const started = performance.now();
      await comm.allreduce(data, 'sum', { inPlace: true });
      times.push((performance.now() - started) / 1000);
    }
    times.sort((a, b) => a - b);
    const seconds = percentile(times, 50);
    result[String(bytes)] = ((bytes / MiB) * (2 * (n - 1))) / n / seconds;
  }
  if (rank === 0) console.log(`RESULT ${JSON.stringify(result)}`);
  await comm.close();
}

const label = (bytes: number): string => (bytes >= MiB ? `${bytes / MiB}MiB` : `${bytes / KiB}KiB`);

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const quick = args.includes('--quick');
  const loadBefore = os.loadavg()[0] ?? 0;
  const load = (): Record<string, number> => ({
    loadavg_1m_before: round(loadBefore, 2),
    loadavg_1m_after: round(os.loadavg()[0] ?? 0, 2),
  });
  // `--only allreduce`: the raw bulk baseline and the allreduce figures alone.
  if (args.includes('--only') && args[args.indexOf('--only') + 1] === 'allreduce') {
    const { notes, ...figures } = await allreduceFigures(quick);
    return { ...figures, notes: { ...notes, quick, ...load() } };
  }
  // `--only messages`: the message throughput and round-trip figures alone.
  if (args.includes('--only') && args[args.indexOf('--only') + 1] === 'messages') {
    const { notes, ...figures } = await messageFigures(quick);
    return { ...figures, notes: { ...notes, quick, ...load() } };
  }
  const checkpointOnly = (rates: number[]) => ({
    checkpoint_MBps: round(median(rates.slice(1))),
    checkpoint_first_MBps: round(rates[0]!),
  });
  // `--only checkpoint`: the checkpoint transfers alone.
  if (args.includes('--only') && args[args.indexOf('--only') + 1] === 'checkpoint') {
    const rates = await checkpointTransfer(quick ? 64 * MiB : 256 * MiB, MiB, 4, 4);
    return { ...checkpointOnly(rates), notes: { rounds: { checkpoint_MBps: rates.map((r) => round(r)) }, ...load() } };
  }
  const { notes: messageNotes, ...messageResults } = await messageFigures(quick);
  const { notes: allreduceNotes, ...allreduce } = await allreduceFigures(quick);
  const checkpoints = await checkpointTransfer(quick ? 64 * MiB : 256 * MiB, MiB, 4, 4);
  return {
    ...messageResults,
    ...allreduce,
    ...checkpointOnly(checkpoints),
    notes: {
      ...messageNotes,
      ...allreduceNotes,
      rounds: { ...messageNotes.rounds, ...allreduceNotes.rounds, checkpoint_MBps: checkpoints.map((r) => round(r)) },
      checkpoint:
        '1 MiB chunks, each acknowledged, window of 4; no sha256 in the loop; four transfers over one connection: ' +
        'checkpoint_MBps is the median of the last three, checkpoint_first_MBps the first (cold: JIT, fresh buffers)',
      quick,
      // Other work on the machine skews every figure here; this says how busy it was.
      ...load(),
    },
  };
}

/** metrics_msgs_per_s vs raw_msgs_per_s (medians of 3 alternating rounds), then the lockstep round trip. */
async function messageFigures(quick: boolean) {
  const messages = quick ? 20_000 : 50_000;
  // Raw and full stack alternate, three rounds each, and the medians are compared: the machine is shared, so
  // back-to-back single runs can differ by more than the thing being measured.
  const raws: number[] = [];
  const fulls: number[] = [];
  const singles: number[] = [];
  for (let round = 0; round < 3; round++) {
    raws.push(await rawMessages(messages));
    fulls.push(await fullStackMessages(messages, 'stream'));
    singles.push(await fullStackMessages(messages, 'one-by-one'));
  }
  const raw = median(raws);
  const full = median(fulls);
  const single = median(singles);
  // Round trips: ours and raw alternate too, and the medians of the per-round p50s are compared.
  const rtts: { p50: number; p99: number }[] = [];
  const rawRtts: { p50: number; p99: number }[] = [];
  for (let round = 0; round < 3; round++) {
    rtts.push(await roundTrips(quick ? 2000 : 5000));
    rawRtts.push(await rawRoundTrips(quick ? 2000 : 5000));
  }
  const rtt = { p50: median(rtts.map((r) => r.p50)), p99: median(rtts.map((r) => r.p99)) };
  const rawRtt = { p50: median(rawRtts.map((r) => r.p50)), p99: median(rawRtts.map((r) => r.p99)) };
  return {
    metrics_msgs_per_s: Math.round(full),
    raw_msgs_per_s: Math.round(raw),
    metrics_vs_raw: round(full / raw, 3),
    metrics_one_by_one_msgs_per_s: Math.round(single),
    metrics_one_by_one_vs_raw: round(single / raw, 3),
    rtt_p50_us: round(rtt.p50),
    rtt_p99_us: round(rtt.p99),
    raw_rtt_p50_us: round(rawRtt.p50),
    raw_rtt_p99_us: round(rawRtt.p99),
    notes: {
      messages,
      rounds: {
        raw_msgs_per_s: raws.map(Math.round),
        metrics_msgs_per_s: fulls.map(Math.round),
        metrics_one_by_one_msgs_per_s: singles.map(Math.round),
        rtt_p50_us: rtts.map((r) => round(r.p50)),
        raw_rtt_p50_us: rawRtts.map((r) => round(r.p50)),
        rtt_p99_us: rtts.map((r) => round(r.p99)),
        raw_rtt_p99_us: rawRtts.map((r) => round(r.p99)),
      },
      metrics_message:
        '10 metric points per message as 7 float64 columns (612 bytes); sender in a child process, receiver in the bench process',
      metrics_stream:
        'metrics_msgs_per_s: the sender streams (awaits every 256th send), so queued messages share frames of up to 64 KiB; ' +
        'metrics_one_by_one_msgs_per_s: each send awaited, one message per frame; raw: one frame per message',
    },
  };
}

/** raw_bulk_MBps (median of 3 rounds), then allreduce bus bandwidth for 2 and 4 ranks at each size. */
async function allreduceFigures(quick: boolean) {
  const bulks: number[] = [];
  for (let round = 0; round < 3; round++) bulks.push(await rawBulk(quick ? 64 * MiB : 256 * MiB, MiB));
  const rawBulkMBps = median(bulks);
  const sizes = quick ? [KiB, MiB, 16 * MiB] : [KiB, 16 * KiB, 256 * KiB, MiB, 4 * MiB, 16 * MiB, 64 * MiB];
  const allreduce: Record<string, Record<string, number>> = {};
  const flat: Record<string, number> = {};
  for (const ranks of [2, 4]) {
    const got = await allreduceBandwidth(ranks, sizes);
    allreduce[`${ranks}_ranks`] = Object.fromEntries(
      Object.entries(got).map(([bytes, mbps]) => [label(Number(bytes)), round(mbps)]),
    );
    for (const [bytes, mbps] of Object.entries(got))
      flat[`allreduce_${ranks}r_${label(Number(bytes))}_MBps`] = round(mbps);
  }
  const ar16 = allreduce['2_ranks']?.['16MiB'];
  return {
    raw_bulk_MBps: round(rawBulkMBps),
    ...flat,
    allreduce_2r_16MiB_vs_raw_bulk: ar16 === undefined ? null : round(ar16 / rawBulkMBps, 3),
    allreduce_MBps: allreduce,
    notes: {
      rounds: { raw_bulk_MBps: bulks.map((x) => round(x)) },
      allreduce:
        'bus bandwidth = size/time x 2(n-1)/n from the median iteration, in place, 1 MiB chunks; ranks are separate processes on this machine',
    },
  };
}

if (process.argv[2] === '--child') {
  // A bench child must never outlive the bench.
  setTimeout(() => process.exit(3), 300_000).unref();
  await child(process.argv.slice(3));
  process.exit(0);
}
