// Lint rules: the recommended sets of ESLint and typescript-eslint, over the TypeScript sources,
// and the layers of docs/architecture.md: imports only point down, and the layers above md reach
// it only through md/index.ts. src/common (the error base and tracing) is below every layer.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Import patterns naming any module of `layer`, from one or two folders below src/. */
const anyOf = (...layers) => layers.flatMap((l) => [`../${l}/*`, `../${l}/**`, `../../${l}/*`, `../../${l}/**`]);
/** md's modules other than its index. */
const mdInternals = ['../md/*', '../md/**', '../../md/*', '../../md/**', '!../md/index.js', '!../../md/index.js'];

const layer = (files, forbidden, message) => ({
  files,
  rules: { 'no-restricted-imports': ['error', { patterns: [{ group: forbidden, message }] }] },
});

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', '.cache/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  layer(['src/common/**'], anyOf('units', 'block', 'md', 'nbd', 'engine', 'csi', 'k8s', 'cli'), 'common is below every layer: it imports nothing of llraid'),
  layer(['src/units/**'], anyOf('block', 'md', 'nbd', 'engine', 'csi', 'k8s', 'cli'), 'units is the bottom layer: it imports common only'),
  layer(['src/block/**'], anyOf('md', 'nbd', 'engine', 'csi', 'k8s', 'cli'), 'block imports units and common only'),
  layer(['src/md/**'], anyOf('nbd', 'engine', 'csi', 'k8s', 'cli'), 'md imports block only'),
  layer(['src/nbd/**'], anyOf('md', 'engine', 'csi', 'k8s', 'cli'), 'nbd imports block only'),
  layer(['src/engine/**'], [...anyOf('csi', 'k8s', 'cli'), ...mdInternals], 'engine imports block, nbd and md (through md/index.js) only'),
  layer(['src/k8s/**'], anyOf('block', 'md', 'nbd', 'engine', 'csi', 'cli'), 'k8s imports units and common only'),
  layer(['src/csi/**'], [...anyOf('cli'), ...mdInternals], 'csi imports the layers below it, md through md/index.js only'),
  layer(['src/cli/**'], mdInternals, 'the CLI reaches md through md/index.js only'),
);
