// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019) over tf.Variables, with
// global-norm gradient clipping. The moments are plain tensors the checkpoint can read and write back.
// Everything stays on the device: the caller syncs the one scalar pack it needs per step.
import * as tf from '@tensorflow/tfjs';

export interface AdamWConfig {
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this; 0 or less turns clipping off. */
  clipNorm?: number;
  /** Which variables get weight decay (default: rank >= 2, i.e. matrices, not biases or norm gains). */
  decay?: readonly boolean[];
}

export interface AdamWState {
  /** Updates applied so far (the t of the bias correction). */
  step: number;
  m: Float32Array[];
  v: Float32Array[];
}

/** sqrt(sum of squares) over all tensors, as a device scalar. */
export function globalNorm(tensors: readonly tf.Tensor[]): tf.Scalar {
  return tf.tidy(() => {
    const squares = tensors.map((t) => tf.sum(tf.square(t)));
    return tf.sqrt(squares.length === 0 ? tf.scalar(0) : tf.addN(squares)) as tf.Scalar;
  });
}

/** Scales all gradients by min(1, clipNorm / norm); returns the clipped tensors and the norm before clipping. */
export function clipByGlobalNorm(
  grads: readonly tf.Tensor[],
  clipNorm: number,
): { clipped: tf.Tensor[]; norm: tf.Scalar } {
  const norm = globalNorm(grads);
  if (!(clipNorm > 0)) return { clipped: grads.map((g) => g.clone()), norm };
  // clip / max(norm, clip) is 1 below the threshold, so no branch (and no sync) is needed.
  const clipped = tf.tidy(() => {
    const scale = tf.div(tf.scalar(clipNorm), tf.maximum(norm, tf.scalar(clipNorm)));
    return grads.map((g) => tf.mul(g, scale));
  });
  return { clipped, norm };
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly weightDecay: number;
  readonly clipNorm: number;
  /** First and second moments, one per variable, same shapes. */
  readonly m: tf.Variable[];
  readonly v: tf.Variable[];
  private readonly decay: boolean[];
  private t = 0;

  constructor(
    readonly variables: readonly tf.Variable[],
    config: AdamWConfig = {},
  ) {
    this.beta1 = config.beta1 ?? 0.9;
    this.beta2 = config.beta2 ?? 0.98;
    this.epsilon = config.epsilon ?? 1e-8;
    this.weightDecay = config.weightDecay ?? 0;
    this.clipNorm = config.clipNorm ?? 0;
    this.decay = variables.map((v, i) => config.decay?.[i] ?? v.rank >= 2);
    // In a tidy: the variable keeps the data, the zeros tensor that seeded it is freed.
    this.m = variables.map((v) => tf.tidy(() => tf.variable(tf.zerosLike(v), false)));
    this.v = variables.map((v) => tf.tidy(() => tf.variable(tf.zerosLike(v), false)));
  }

  get step(): number {
    return this.t;
  }

  /**
   * One update with gradients aligned to `variables`. Returns the global gradient norm before clipping as a
   * device scalar (the caller owns it and decides when to read it).
   */
  apply(grads: readonly tf.Tensor[], learningRate: number): tf.Scalar {
    if (grads.length !== this.variables.length) {
      throw new RangeError(`AdamW.apply: ${grads.length} gradients for ${this.variables.length} variables`);
    }
    this.t += 1;
    // Bias corrections in float64 on the host, folded into one step size per update.
    const c1 = 1 - this.beta1 ** this.t;
    const c2 = 1 - this.beta2 ** this.t;
    return tf.tidy(() => {
      // g^2 serves both the global norm and the second moment, and the clip scale s is folded into the moment
      // coefficients ((1-b1)*s for m, (1-b2)*s^2 for v), so clipping costs one sum per variable, nothing more.
      const squares = grads.map((g) => tf.square(g));
      const norm = tf.sqrt(squares.length === 0 ? tf.scalar(0) : tf.addN(squares.map((q) => tf.sum(q)))) as tf.Scalar;
      const clipScale =
        this.clipNorm > 0 ? tf.div(tf.scalar(this.clipNorm), tf.maximum(norm, tf.scalar(this.clipNorm))) : tf.scalar(1);
      const b1 = tf.scalar(this.beta1);
      const b1c = tf.mul(tf.scalar(1 - this.beta1), clipScale);
      const b2 = tf.scalar(this.beta2);
      const b2c = tf.mul(tf.scalar(1 - this.beta2), tf.square(clipScale));
      const stepSize = tf.scalar(learningRate / c1);
      const invC2 = tf.scalar(1 / c2);
      const eps = tf.scalar(this.epsilon);
      const keep = tf.scalar(1 - learningRate * this.weightDecay);
      this.variables.forEach((p, i) => {
        const g = grads[i] as tf.Tensor;
        const m = this.m[i] as tf.Variable;
        const v = this.v[i] as tf.Variable;
        const mNew = tf.add(tf.mul(m, b1), tf.mul(g, b1c));
        const vNew = tf.add(tf.mul(v, b2), tf.mul(squares[i] as tf.Tensor, b2c));
        m.assign(mNew);
        v.assign(vNew);
        // p <- p * (1 - lr*wd) - lr * mhat / (sqrt(vhat) + eps): decay decoupled from the adaptive step.
        const update = tf.mul(stepSize, tf.div(mNew, tf.add(tf.sqrt(tf.mul(vNew, invC2)), eps)));
        const decayed = this.decay[i] === true && this.weightDecay > 0 ? tf.mul(p, keep) : p;
        p.assign(tf.sub(decayed, update));
      });
      return norm;
    });
  }

  async getState(): Promise<AdamWState> {
    const m = await Promise.all(this.m.map(async (t) => new Float32Array(await t.data())));
    const v = await Promise.all(this.v.map(async (t) => new Float32Array(await t.data())));
    return { step: this.t, m, v };
  }

  setState(state: AdamWState): void {
    if (state.m.length !== this.m.length || state.v.length !== this.v.length) {
      throw new RangeError(`AdamW.setState: state has ${state.m.length} moments, optimizer has ${this.m.length}`);
    }
    const put = (targets: tf.Variable[], values: Float32Array[]): void =>
      targets.forEach((t, i) => {
        const value = values[i] as Float32Array;
        if (value.length !== t.size)
          throw new RangeError(`AdamW.setState: moment ${i} has ${value.length} values, expected ${t.size}`);
        tf.tidy(() => t.assign(tf.tensor(value, t.shape, 'float32')));
      });
    put(this.m, state.m);
    put(this.v, state.v);
    this.t = state.step;
  }

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}
