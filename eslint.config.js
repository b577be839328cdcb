// One lint setup, run by `npm test` (see package.json) and therefore by CI.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import maxOwnFunctionLines from './eslint/max-own-function-lines.js'

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'bench/results/', 'bench/.build/', 'client/dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname }
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error'
    }
  },
  {
    // Modules a reader can hold: no file past 400 lines, no function past 80 lines of its own (nested
    // functions do not count, so a factory closure of small functions is fine). npm run lint fails on
    // warnings; a function that must be longer says why in an eslint-disable comment.
    files: ['src/**/*.ts'],
    plugins: { local: { rules: { 'max-own-function-lines': maxOwnFunctionLines } } },
    rules: {
      'max-lines': ['warn', { max: 400, skipBlankLines: true, skipComments: true }],
      'local/max-own-function-lines': ['warn', { max: 80 }]
    }
  },
  {
    files: ['eslint.config.js', 'eslint/**'],
    ...tseslint.configs.disableTypeChecked
  },
  {
    // Scripts, benches and test harnesses talk to a terminal on purpose.
    files: ['scripts/**', 'bench/**', 'test/support/**'],
    rules: { 'no-console': 'off' }
  }
)
