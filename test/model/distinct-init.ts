// Weight initialisers for the positional-encoding tests: every table gets deterministic, distinct values
// (sin(i * frequency + n) for the n-th table made), so a wrong row or index shows up in a comparison.
import * as tf from '@tensorflow/tfjs';
import type { WeightInit } from '../../src/model/positional/types.ts';

export function distinctInit(frequency: number): WeightInit {
  let made = 0;
  return {
    normal: (_name, shape) => {
      const size = shape.reduce((a, b) => a * b, 1);
      made++;
      return tf.variable(
        tf.tensor(
          Array.from({ length: size }, (_, i) => Math.sin(i * frequency + made)),
          shape,
        ),
      );
    },
    zeros: (_name, shape) => tf.variable(tf.zeros(shape)),
    ones: (_name, shape) => tf.variable(tf.ones(shape)),
  };
}
