// The arithmetic of the collectives, apart from any messaging: element-wise reductions over float32 arrays, and how
// an array is cut into the ring's segments and the chunks that travel.

export const REDUCE_OPS = ['sum', 'mean', 'max', 'min'] as const;
export type ReduceOp = (typeof REDUCE_OPS)[number];

export function isReduceOp(op: unknown): op is ReduceOp {
  return REDUCE_OPS.includes(op as ReduceOp);
}

/** The op that combines two partial results: a mean is a sum until it is divided at the end. */
export function combiningOp(op: ReduceOp): Exclude<ReduceOp, 'mean'> {
  return op === 'mean' ? 'sum' : op;
}

/** a mod n, never negative. */
export const mod = (a: number, n: number): number => ((a % n) + n) % n;

/** Segment i of n over length: [start, end), as even as integer division allows. */
export function segment(length: number, n: number, i: number): [number, number] {
  return [Math.floor((length * i) / n), Math.floor((length * (i + 1)) / n)];
}

/** How many chunks of at most chunkLength cover [start, end): always at least one, empty for an empty range. */
export function chunkCount(start: number, end: number, chunkLength: number): number {
  return Math.max(1, Math.ceil((end - start) / chunkLength));
}

/**
 * chunk[i] = op(chunk[i], mine[i]), also written to mine when `store`: the received chunk holds the result, so it
 * can be forwarded as is.
 */
export function combine(op: ReduceOp, chunk: Float32Array, mine: Float32Array, store: boolean): void {
  const n = chunk.length;
  if (op === 'max' || op === 'min') {
    if (op === 'max') for (let i = 0; i < n; i++) if (mine[i]! > chunk[i]!) chunk[i] = mine[i]!;
    if (op === 'min') for (let i = 0; i < n; i++) if (mine[i]! < chunk[i]!) chunk[i] = mine[i]!;
    if (store) mine.set(chunk);
    return;
  }
  // This loop is most of allreduce's CPU time and runs at memory speed, so it is unrolled by hand (V8 does not) and
  // stores into both arrays in one pass (one pass less over memory than a separate copy).
  let i = 0;
  if (store) {
    for (; i + 4 <= n; i += 4) {
      const a = chunk[i]! + mine[i]!;
      const b = chunk[i + 1]! + mine[i + 1]!;
      const c = chunk[i + 2]! + mine[i + 2]!;
      const d = chunk[i + 3]! + mine[i + 3]!;
      chunk[i] = mine[i] = a;
      chunk[i + 1] = mine[i + 1] = b;
      chunk[i + 2] = mine[i + 2] = c;
      chunk[i + 3] = mine[i + 3] = d;
    }
    for (; i < n; i++) chunk[i] = mine[i] = chunk[i]! + mine[i]!;
  } else {
    for (; i + 4 <= n; i += 4) {
      chunk[i]! += mine[i]!;
      chunk[i + 1]! += mine[i + 1]!;
      chunk[i + 2]! += mine[i + 2]!;
      chunk[i + 3]! += mine[i + 3]!;
    }
    for (; i < n; i++) chunk[i]! += mine[i]!;
  }
}

/** values[i] /= by, in place (the last step of a mean). */
export function divide(values: Float32Array, by: number): void {
  for (let i = 0; i < values.length; i++) values[i]! /= by;
}
