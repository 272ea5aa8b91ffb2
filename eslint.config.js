// Lint: type-aware rules that catch what strict tsc can't (floating promises, import cycles), and the import
// rules of ARCHITECTURE.md as zones, so the map is enforced rather than described.
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';

const tensorflow = {
  patterns: [{ group: ['@tensorflow/*'], message: 'the coordinator and the protocol never load TensorFlow.js' }],
};

/** `target` may not import from `from`: each zone is one arrow of the map that must not exist. */
const zones = [
  // protocol is the leaf: the wire contract imports nothing of the project.
  {
    target: './protocol',
    from: ['./coordinator', './node-agent', './src', './bench', './test'],
    message: 'protocol is a leaf',
  },
  // The coordinator schedules and records; it trains nothing.
  {
    target: './coordinator',
    from: ['./node-agent', './src/train', './src/model', './src/serve', './src/commands', './src/cli.ts'],
    message: 'the coordinator never imports the agent, TensorFlow.js or the training code',
  },
  {
    target: './node-agent',
    from: ['./coordinator', './src/serve', './src/report', './src/commands', './src/cli.ts'],
    message: 'an agent talks to the coordinator only over the protocol',
  },
  // The workload (model, data, train, eval) knows nothing of the actors or the user surface.
  {
    target: ['./src/model', './src/data', './src/train', './src/eval'],
    from: ['./coordinator', './node-agent', './src/serve', './src/report', './src/commands', './src/cli.ts'],
    message: 'the workload does not import the actors or the user surface',
  },
  {
    target: ['./src/model', './src/data', './src/eval'],
    from: ['./src/train'],
    message: 'training builds on the model, data and eval, not the other way',
  },
  // Run directories are read by one module; the report may run a trained model (attention heatmaps) through the
  // server's inference, never the other way.
  {
    target: './src/run-dir',
    from: ['./coordinator', './node-agent', './src/report', './src/serve', './src/commands', './src/cli.ts'],
    message: 'src/run-dir reads run directories and nothing else',
  },
  {
    target: './src/report',
    from: ['./coordinator', './node-agent', './src/commands', './src/cli.ts'],
    message: 'the report reads run directories only',
  },
  {
    target: './src/serve',
    from: ['./coordinator', './node-agent', './src/report', './src/commands', './src/cli.ts'],
    message: 'the server loads trained models; it does not import the report',
  },
];

export default tseslint.config(
  { ignores: ['node_modules/**', 'runs/**', 'dist/**', 'bench/results/**', '**/*.js', '**/*.mjs'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { 'import-x': importX },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'import-x/no-cycle': 'error',
      'import-x/no-restricted-paths': ['error', { basePath: import.meta.dirname, zones }],
    },
  },
  { files: ['protocol/**/*.ts', 'coordinator/**/*.ts'], rules: { 'no-restricted-imports': ['error', tensorflow] } },
);
