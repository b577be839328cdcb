import { RuleTester } from 'eslint'
import { describe, it } from 'vitest'
import rule from '../../eslint/max-own-function-lines.js'

RuleTester.describe = describe
RuleTester.it = it
const tester = new RuleTester({ languageOptions: { ecmaVersion: 2023, sourceType: 'module' } })

const statements = (n: number): string => Array.from({ length: n }, (_, i) => `  const v${i} = ${i}`).join('\n')

tester.run('max-own-function-lines', rule, {
  valid: [
    { code: `function f () {\n${statements(3)}\n}`, options: [{ max: 3 }] },
    // Blank lines and comment-only lines do not count.
    { code: `function f () {\n${statements(2)}\n\n  // why\n  /* and\n  more */\n  return 1\n}`, options: [{ max: 3 }] },
    // A factory closure of small functions: nested bodies are their own functions' lines, not the factory's.
    { code: `function factory () {\n  const a = 1\n  function small () {\n${statements(3)}\n  }\n  const b = () => {\n${statements(3)}\n  }\n  return { small, b, a }\n}`, options: [{ max: 4 }] }
  ],
  invalid: [
    { code: `function f () {\n${statements(4)}\n}`, options: [{ max: 3 }], errors: [{ messageId: 'tooLong', data: { count: 4, max: 3 } }] },
    // A nested function that is itself too long is reported, its parent is not.
    { code: `function outer () {\n  const inner = () => {\n${statements(5)}\n  }\n  return inner\n}`, options: [{ max: 3 }], errors: [{ messageId: 'tooLong', data: { count: 5, max: 3 } }] },
    // Code followed by a comment on the same line counts.
    { code: `function f () {\n  a() // one\n  b() // two\n}`, options: [{ max: 1 }], errors: [{ messageId: 'tooLong', data: { count: 2, max: 1 } }] }
  ]
})
