// MAPE: the plain-number indices (reference.ts), the tensor encoding against them, the training offset, and
// decoding through the KV cache against full forward passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../src/train/backend.ts';
import { BOS, EOS, tokenizer } from '../../src/data/tokenizer.ts';
import { Rng } from '../../src/data/rng.ts';
import {
  MAPE_FIXED_INDEX,
  MAPE_ROLE,
  MAPE_ROLE_COUNT,
  mapeAnswerDigits,
  mapeIndices,
  type MapeNumberOrder,
} from '../../src/model/positional/reference.ts';
import { createMape, mapeOffsets } from '../../src/model/positional/mape.ts';
import type { PositionalConfig } from '../../src/model/positional/types.ts';
import { distinctInit } from './distinct-init.ts';
import { Transformer } from '../../src/model/transformer.ts';
import { greedyDecode } from '../../src/model/decode.ts';

await selectBackend('cpu');

const MSB: MapeNumberOrder = { operands: 'msb', answer: 'msb' };
const ANSWER_LSB: MapeNumberOrder = { operands: 'msb', answer: 'lsb' };
const ALL_LSB: MapeNumberOrder = { operands: 'lsb', answer: 'lsb' };

/** "c:index/role" per token of BOS + text + EOS, for readable expectations. */
function show(text: string, order: MapeNumberOrder): string[] {
  const ids = [BOS, ...tokenizer.encode(text), EOS];
  const { index, role } = mapeIndices(ids, order);
  return ids.map((id, t) => `${tokenizer.decode([id]) || '_'}:${index[t]}/${role[t]}`);
}

void test('mapeIndices: significance per digit, the answer side shifted by one, in every digit order', () => {
  const [A, B, ANS, OP, SP] = [MAPE_ROLE.operand, MAPE_ROLE.operand + 1, MAPE_ROLE.answer, MAPE_ROLE.operator, 0];
  // Padded answer, most significant first: E = 3 + 1 digits; '=' predicts the thousands digit (index 1 + 3).
  assert.deepEqual(show('123+45=0168', MSB), [
    `_:0/${SP}`,
    `1:3/${A}`,
    `2:2/${A}`,
    `3:1/${A}`,
    `+:0/${OP}`,
    `4:2/${B}`,
    `5:1/${B}`,
    `=:4/${ANS}`,
    `0:3/${ANS}`,
    `1:2/${ANS}`,
    `6:1/${ANS}`,
    `8:0/${ANS}`,
    `_:0/${SP}`,
  ]);
  // Reversed answer: '=' predicts the units digit (index 1), each digit the next one.
  assert.deepEqual(show('123+45=861', ANSWER_LSB).slice(7, 11), [
    `=:1/${ANS}`,
    `8:2/${ANS}`,
    `6:3/${ANS}`,
    `1:4/${ANS}`,
  ]);
  // Every number least significant first: the operands count up from the units.
  assert.deepEqual(show('321+54=861', ALL_LSB).slice(1, 7), [
    `3:1/${A}`,
    `2:2/${A}`,
    `1:3/${A}`,
    `+:0/${OP}`,
    `5:1/${B}`,
    `4:2/${B}`,
  ]);
});

void test('mapeIndices: the k-th digits of both operands and the token predicting the answer k-th digit share an index', () => {
  const rng = new Rng(3);
  for (let trial = 0; trial < 200; trial++) {
    const digits = (n: number): string => Array.from({ length: n }, () => String(rng.int(0, 9))).join('');
    const a = digits(rng.int(1, 9));
    const b = digits(rng.int(1, 9));
    const n = Math.max(a.length, b.length);
    const sum = (BigInt(a) + BigInt(b)).toString().padStart(n + 1, '0');
    const reverse = (s: string): string => Array.from(s).reverse().join('');
    for (const [order, prompt, target] of [
      [MSB, `${a}+${b}=`, sum],
      [ANSWER_LSB, `${a}+${b}=`, reverse(sum)],
      [ALL_LSB, `${reverse(a)}+${reverse(b)}=`, reverse(sum)],
    ] as const) {
      const ids = [BOS, ...tokenizer.encode(prompt + target), EOS];
      const { index } = mapeIndices(ids, order);
      // Significance of every prompt digit, read off the text.
      const sig = new Map<number, number[]>();
      const note = (s: number, t: number): void => {
        sig.set(s, [...(sig.get(s) ?? []), index[t] as number]);
      };
      const aStart = 1;
      const bStart = 2 + a.length;
      for (let j = 0; j < a.length; j++) note(order.operands === 'msb' ? a.length - 1 - j : j, aStart + j);
      for (let j = 0; j < b.length; j++) note(order.operands === 'msb' ? b.length - 1 - j : j, bStart + j);
      // The token before each answer digit predicts it.
      const answerStart = 1 + prompt.length;
      for (let j = 0; j < target.length; j++)
        note(order.answer === 'msb' ? target.length - 1 - j : j, answerStart + j - 1);
      for (const [s, found] of sig)
        assert.ok(
          found.every((i) => i === 1 + s),
          `${prompt}${target} (${JSON.stringify(order)}): significance ${s} got ${found}`,
        );
    }
  }
});

void test('mapeIndices: roles per operand, text degrades to plain positions, spaced digits stay one number', () => {
  const ids = [BOS, ...tokenizer.encode('3*4+5=\n')];
  const { role, index } = mapeIndices(ids);
  assert.deepEqual([role[1], role[3], role[5]], [MAPE_ROLE.operand, MAPE_ROLE.operand + 1, MAPE_ROLE.operand + 2]);
  assert.equal(index[6], 1 + mapeAnswerDigits([1, 1, 1], '+') - 1);
  // Operands past MAPE_OPERAND_ROLES share the last operand role.
  const many = mapeIndices([BOS, ...tokenizer.encode('1+2+3+4+5+6=')]).role;
  assert.equal(many[11], MAPE_ROLE_COUNT - 1);
  const text = mapeIndices([BOS, ...tokenizer.encode('Tom has 12')]);
  assert.deepEqual(text.index.slice(1, 4), [2, 3, 4]);
  assert.deepEqual(text.role.slice(1, 4), [MAPE_ROLE.text, MAPE_ROLE.text, MAPE_ROLE.text]);
  assert.deepEqual(text.index.slice(9), [2, 1]);
  assert.deepEqual(show('1 2 3+4 5=', MSB).slice(1, 6), [`1:3/4`, ` :2/4`, `2:2/4`, ` :1/4`, `3:1/4`]);
  assert.equal(mapeAnswerDigits([3, 2], '*'), 5);
  assert.equal(mapeAnswerDigits([4, 2], '-'), 4);
  assert.equal(mapeAnswerDigits([], null), 1);
  // Specials and operators keep the fixed index.
  assert.equal(
    mapeIndices([BOS, EOS, 0]).index.every((i) => i === MAPE_FIXED_INDEX),
    true,
  );
});

void test('mapeIndices is causal from the first "=" on: a token keeps its index whatever follows it', () => {
  const rng = new Rng(11);
  const alphabet = '0123456789+*=\n ab';
  for (let trial = 0; trial < 300; trial++) {
    const text = Array.from({ length: rng.int(1, 30) }, () => alphabet[rng.int(0, alphabet.length - 1)]).join('');
    const ids = [BOS, ...tokenizer.encode(text)];
    const order = rng.pick([MSB, ANSWER_LSB, ALL_LSB]);
    const full = mapeIndices(ids, order);
    const firstEquals = ids.indexOf(tokenizer.encode('=')[0] as number);
    if (firstEquals < 0) continue;
    for (let t = firstEquals; t < ids.length; t++) {
      const prefix = mapeIndices(ids.slice(0, t + 1), order);
      assert.equal(prefix.index[t], full.index[t], `${JSON.stringify(text)} position ${t}`);
      assert.equal(prefix.role[t], full.role[t], `${JSON.stringify(text)} position ${t}`);
    }
  }
});

// Deterministic, distinct table values so a wrong row shows up.
const init = distinctInit(1.3);
const config: PositionalConfig = { dModel: 6, heads: 2, headDim: 3, layers: 1, maxLen: 16 };

void test('mape embed adds significance[index + offset] + roles[role], per row, offsets only in training', () => {
  const rows = ['12+345=0357', '9+9=18'].map((s) => [BOS, ...tokenizer.encode(s)]);
  const len = Math.min(...rows.map((r) => r.length));
  const tokens = rows.map((r) => r.slice(0, len));
  const maxOffset = 5;
  const pe = createMape({ ...config, mape: { maxOffset, roles: true, order: MSB } }, init);
  assert.deepEqual(pe.variableNames, ['mape/significance', 'mape/roles']);
  const [sigTable, roleTable] = pe.variables.map((v) => v.arraySync() as number[][]);
  for (const [start, seq] of [
    [0, len],
    [3, len - 3],
  ] as const) {
    for (const training of [false, true]) {
      const seed = 42;
      const out = tf.tidy(
        () =>
          pe.embed(tf.zeros([2, seq, 6]) as tf.Tensor3D, start, { tokens, training, seed }).arraySync() as number[][][],
      );
      const offsets = training ? mapeOffsets(2, maxOffset, seed) : [0, 0];
      tokens.forEach((row, b) => {
        const { index, role } = mapeIndices(row, MSB);
        for (let t = 0; t < seq; t++) {
          const i = index[start + t] as number;
          const r = i === MAPE_FIXED_INDEX ? i : i + (offsets[b] as number);
          const want = sigTable?.[r]?.map((v, k) => v + (roleTable?.[role[start + t] as number]?.[k] ?? NaN));
          out[b]?.[t]?.forEach((v, k) => assert.ok(Math.abs(v - (want?.[k] ?? NaN)) < 1e-5, `row ${b} t ${t}`));
        }
      });
    }
  }
  // The offsets come from the seed alone, stay in [0, maxOffset] and differ between seeds.
  assert.deepEqual(mapeOffsets(8, maxOffset, 7), mapeOffsets(8, maxOffset, 7));
  assert.notDeepEqual(mapeOffsets(8, maxOffset, 7), mapeOffsets(8, maxOffset, 8));
  assert.ok(mapeOffsets(200, maxOffset, 1).every((o) => o >= 0 && o <= maxOffset));
  assert.ok(new Set(mapeOffsets(200, maxOffset, 1)).size === maxOffset + 1);
  assert.throws(() => tf.tidy(() => pe.embed(tf.zeros([2, 3, 6]) as tf.Tensor3D, 0)), /TokenContext/);
  pe.dispose();
});

void test('mape ablations: mapeOffset false or mapeMaxOffset 0 train without offsets; mapeRoles false has no role table', async () => {
  const base = { layers: 1, dModel: 8, heads: 2, ffnDim: 16, dropout: 0, maxLen: 24 } as const;
  const ids = tf.tensor2d([[BOS, ...tokenizer.encode('12+34=046')]], undefined, 'int32');
  const logits = (model: Transformer, training: boolean, seed: number): number[] =>
    tf.tidy(() => Array.from(model.forward(ids, { training, dropoutSeed: seed }).logits.dataSync()));
  const vocabSize = tokenizer.vocabSize;
  const withOffset = Transformer.create({ ...base, vocabSize, encoding: 'mape' }, 1);
  // Training draws an offset per sequence: seeds that differ give different outputs, one seed the same one.
  assert.deepEqual(logits(withOffset, true, 3), logits(withOffset, true, 3));
  const seeds = [1, 2, 3, 4, 5].map((s) => logits(withOffset, true, s).join(','));
  assert.ok(new Set(seeds).size > 1, 'the offset never changed the output');
  assert.notDeepEqual(logits(withOffset, false, 1), logits(withOffset, true, 1));
  for (const patch of [{ mapeOffset: false }, { mapeMaxOffset: 0 }]) {
    const model = Transformer.create({ ...base, vocabSize, encoding: 'mape', ...patch }, 1);
    assert.deepEqual(logits(model, true, 1), logits(model, false, 1), JSON.stringify(patch));
    assert.deepEqual(logits(model, true, 2), logits(model, false, 1), JSON.stringify(patch));
    model.dispose();
  }
  const noRoles = Transformer.create({ ...base, vocabSize, encoding: 'mape', mapeRoles: false }, 1);
  assert.deepEqual(noRoles.positional.variableNames, ['mape/significance']);
  assert.equal(withOffset.parameterCount() - noRoles.parameterCount(), MAPE_ROLE_COUNT * base.dModel);
  noRoles.dispose();
  withOffset.dispose();
  ids.dispose();
});

void test('mape: greedy decoding through the KV cache equals argmax of full forward passes', () => {
  const order = [MSB, ANSWER_LSB, ALL_LSB] as const;
  // Prompts of equal and different lengths, with and without '=' (a growing number recomputes the cache).
  const texts = ['12+345=', '9+9=', '123+456=', '7*8=', '1 2+3=', '45', '3+4=\n', '12+34=1'];
  const prompts = texts.map((s) => [BOS, ...tokenizer.encode(s)]);
  const digitIds = tokenizer.encode('0123456789');
  for (const numberOrder of order) {
    const model = Transformer.create(
      {
        layers: 2,
        dModel: 16,
        heads: 2,
        ffnDim: 32,
        dropout: 0,
        maxLen: 24,
        vocabSize: tokenizer.vocabSize,
        encoding: 'mape',
        mapeNumberOrder: numberOrder,
      },
      5,
    );
    // Large random weights, and an unembedding that favours digits and EOS so outputs are numbers.
    const rng = new Rng(9);
    for (const v of model.variables) {
      if (v.rank < 2) continue;
      const scale = 3 / Math.sqrt(v.shape[0] ?? 1);
      const values = Float32Array.from({ length: v.size }, () => (rng.next() - 0.5) * 2 * scale);
      if (v.name.endsWith('unembedding')) {
        const vocab = v.shape[1] ?? 0;
        for (let i = 0; i < values.length; i++) {
          const id = i % vocab;
          if (id === EOS) values[i] = (values[i] ?? 0) * 0.5;
          else if (!digitIds.includes(id)) values[i] = 0;
        }
      }
      tf.tidy(() => v.assign(tf.tensor(values, v.shape)));
    }
    // A number written most significant first that grows past the cached positions moves their significance: the
    // cache must be rebuilt then. Least significant first, it does not.
    const grown = [BOS, ...tokenizer.encode('457')];
    assert.equal(model.positional.cachedPositionsHold?.([grown], 3), numberOrder.operands === 'lsb');
    assert.equal(model.positional.cachedPositionsHold?.([[BOS, ...tokenizer.encode('45+1')]], 3), true);
    const got = greedyDecode(model, prompts, { maxNewTokens: 8, eosId: EOS, batchSize: 3 });
    const before = tf.memory().numTensors;
    assert.deepEqual(greedyDecode(model, prompts, { maxNewTokens: 8, eosId: EOS, batchSize: 3 }), got);
    assert.equal(tf.memory().numTensors, before, 'decode leaked tensors');
    let digits = 0;
    prompts.forEach((prompt, i) => {
      const seq = [...prompt];
      const want: number[] = [];
      for (let k = 0; k < 8; k++) {
        const next = tf.tidy(() => {
          const { logits } = model.forward(tf.tensor2d([seq], undefined, 'int32'), { training: false });
          return tf.argMax(tf.squeeze(tf.slice(logits, [0, seq.length - 1, 0], [1, 1, -1])), -1).dataSync()[0];
        });
        if (next === EOS || next === undefined) break;
        want.push(next);
        seq.push(next);
      }
      assert.deepEqual(got[i], want, `${JSON.stringify(numberOrder)}, prompt ${JSON.stringify(texts[i])}`);
      digits += want.filter((id) => digitIds.includes(id)).length;
    });
    // Not vacuous: the generated text has digits, so answer-side indices were exercised.
    assert.ok(digits > 5, `only ${digits} digits generated`);
    model.dispose();
  }
});
