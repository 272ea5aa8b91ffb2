// Tensor helpers shared by the model and its positional encodings.
import * as tf from '@tensorflow/tfjs';

function swapLastTwo(x: tf.Tensor): tf.Tensor {
  const perm = x.shape.map((_, i) => i);
  const n = perm.length;
  [perm[n - 2], perm[n - 1]] = [perm[n - 1] ?? 0, perm[n - 2] ?? 0];
  return tf.transpose(x, perm);
}

const matMulWithPlainGrads = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [a, b, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: tf.matMul(a, b),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
      const [sa, sb] = saved as [tf.Tensor, tf.Tensor];
      return [tf.matMul(dy, swapLastTwo(sb)), tf.matMul(swapLastTwo(sa), dy)];
    },
  };
});

/**
 * a · b for same-rank operands (rank 2, or equal batch dims), with gradients that never ask for a transposed
 * matmul: the wasm backend's BatchMatMul is 5-10x slower with transposeA/transposeB than on a transposed copy,
 * and tf.matMul's own gradient uses both flags. An explicit transpose is cheap by comparison.
 */
export function matMul<T extends tf.Tensor>(a: T, b: tf.Tensor): T {
  return matMulWithPlainGrads(a, b) as T;
}

/** a · bᵀ over the last two axes, through an explicit transpose for the same reason. */
export function matMulTransposeB<T extends tf.Tensor>(a: T, b: tf.Tensor): T {
  return matMul(a, swapLastTwo(b));
}
