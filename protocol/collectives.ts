// The collective algorithms, over whatever moves a rank's messages (the Communicator gives a CollectiveLink): a
// binomial-tree bcast, a gather, a reduce to a root, and the pipelined ring allreduce. Each collective call has a
// sequence number, the same on every rank, that tags all of its messages.
import { chunkCount, combine, combiningOp, divide, mod, segment } from './reduce-ops.ts';
import type { ReduceOp } from './reduce-ops.ts';

export interface CollectiveLink {
  readonly rank: number;
  readonly size: number;
  /** Collective payloads travel in chunks of at most this many floats, so transfer and reduction overlap. */
  readonly chunkFloats: number;
  /** `owned`: the array is never written again, so it may be sent without a copy. */
  send(to: number, seq: number, data: unknown, owned?: boolean): Promise<void>;
  receive(from: number, seq: number, what: string): Promise<unknown>;
  /** As receive, for exactly `length` floats (anything else breaks the communicator, naming the sender). */
  receiveFloats(from: number, seq: number, length: number, what: string): Promise<Float32Array>;
}

/** Root's value, on every rank (binomial tree, so the root sends log2(size) times). */
export async function bcast<T>(link: CollectiveLink, seq: number, value: T, root: number): Promise<T> {
  const n = link.size;
  const vr = mod(link.rank - root, n);
  let result: unknown = value;
  let mask = 1;
  while (mask < n) {
    if ((vr & mask) !== 0) {
      result = await link.receive(mod(vr - mask + root, n), seq, 'bcast');
      break;
    }
    mask <<= 1;
  }
  mask >>= 1;
  const sends: Promise<void>[] = [];
  while (mask > 0) {
    if (vr + mask < n) sends.push(link.send(mod(vr + mask + root, n), seq, result));
    mask >>= 1;
  }
  await Promise.all(sends);
  return result as T;
}

/** Every rank's value at root, in rank order; undefined on the other ranks. */
export async function gather<T>(link: CollectiveLink, seq: number, value: T, root: number): Promise<T[] | undefined> {
  if (link.rank !== root) {
    await link.send(root, seq, value);
    return undefined;
  }
  const out: unknown[] = [];
  for (let r = 0; r < link.size; r++) out.push(r === root ? value : await link.receive(r, seq, 'gather'));
  return out as T[];
}

/** The element-wise reduction of every rank's array at root; undefined on the other ranks. */
export async function reduce(
  link: CollectiveLink,
  seq: number,
  data: Float32Array,
  op: ReduceOp,
  root: number,
): Promise<Float32Array | undefined> {
  if (link.rank !== root) {
    await sendChunks(link, root, seq, data, 0, data.length);
    return undefined;
  }
  const out = data.slice();
  for (let r = 0; r < link.size; r++) {
    if (r !== root) {
      await receiveChunks(link, r, seq, out, 0, out.length, {
        op: combiningOp(op),
        divideBy: 1,
        store: true,
        forward: undefined,
        sends: [],
        what: 'reduce',
      });
    }
  }
  if (op === 'mean') divide(out, link.size);
  return out;
}

/**
 * The element-wise reduction of every rank's array, on every rank: a ring reduce-scatter then a ring allgather, so
 * each rank sends and receives 2(n-1)/n of the array whatever n is. `inPlace` writes the result into data (no
 * second array of the full size: gradients reduced where they lie).
 */
export async function allreduce(
  link: CollectiveLink,
  seq: number,
  data: Float32Array,
  op: ReduceOp,
  inPlace: boolean,
): Promise<Float32Array> {
  const n = link.size;
  const rank = link.rank;
  const out = inPlace ? data : data.slice();
  if (n === 1) return out;
  const right = mod(rank + 1, n);
  const left = mod(rank - 1, n);
  const reduceOp = combiningOp(op);
  const sends: Promise<void>[] = [];
  const seg = (k: number): [number, number] => segment(out.length, n, mod(k, n));
  // Pipelined ring: only segment `rank` is sent up front; every later send forwards a chunk as soon as it is
  // ready, so the transfer of one chunk overlaps the reduction of the next.
  // Segment `rank` goes without a copy: out is ours for the call, and that segment is next written when its
  // final value comes back round the ring, which cannot happen before the bytes sent from it have arrived.
  sends.push(sendChunks(link, right, seq, out, ...seg(rank), true));
  // Reduce-scatter: step s reduces segment rank-s-1 and forwards it (step s+1's send). After n-1 steps this
  // rank holds the full reduction of segment rank+1, which is also the first allgather send. Partial sums
  // before the last step are only forwarded, never stored: the allgather overwrites those segments.
  for (let step = 0; step < n - 1; step++) {
    const last = step === n - 2;
    await receiveChunks(link, left, seq, out, ...seg(rank - step - 1), {
      op: reduceOp,
      divideBy: last && op === 'mean' ? n : 1,
      store: last,
      forward: right,
      sends,
      what: 'allreduce reduce-scatter',
    });
  }
  // Allgather: step s copies segment rank-s and forwards it, except on the last step.
  for (let step = 0; step < n - 1; step++) {
    await receiveChunks(link, left, seq, out, ...seg(rank - step), {
      op: undefined,
      divideBy: 1,
      store: true,
      forward: step < n - 2 ? right : undefined,
      sends,
      what: 'allreduce allgather',
    });
  }
  await Promise.all(sends);
  return out;
}

/** Sends out[start, end) in chunks, copied unless `owned` (see CollectiveLink.send). */
function sendChunks(
  link: CollectiveLink,
  to: number,
  seq: number,
  out: Float32Array,
  start: number,
  end: number,
  owned = false,
): Promise<void> {
  const sends: Promise<void>[] = [];
  const count = chunkCount(start, end, link.chunkFloats);
  for (let k = 0, i = start; k < count; k++, i += link.chunkFloats)
    sends.push(link.send(to, seq, out.subarray(i, Math.min(end, i + link.chunkFloats)), owned));
  return Promise.all(sends).then(() => undefined);
}

/**
 * Receives out[start, end) in chunks from `from`: each is combined with op and out (taken as is when op is
 * undefined), divided by divideBy (for mean), written to out when `store`, and forwarded to `forward` when set.
 */
async function receiveChunks(
  link: CollectiveLink,
  from: number,
  seq: number,
  out: Float32Array,
  start: number,
  end: number,
  how: {
    op: ReduceOp | undefined;
    divideBy: number;
    store: boolean;
    forward: number | undefined;
    sends: Promise<void>[];
    what: string;
  },
): Promise<void> {
  const count = chunkCount(start, end, link.chunkFloats);
  for (let k = 0, i = start; k < count; k++, i += link.chunkFloats) {
    const stop = Math.min(end, i + link.chunkFloats);
    const chunk = await link.receiveFloats(from, seq, stop - i, how.what);
    const mine = out.subarray(i, stop);
    // The received chunk is ours and never read again after this, so it takes the result and is forwarded
    // without a copy.
    if (how.op === undefined) {
      if (how.store) mine.set(chunk);
    } else if (how.divideBy === 1) {
      combine(how.op, chunk, mine, how.store);
    } else {
      combine(how.op, chunk, mine, false);
      divide(chunk, how.divideBy);
      if (how.store) mine.set(chunk);
    }
    if (how.forward !== undefined) how.sends.push(link.send(how.forward, seq, chunk, true));
  }
}
