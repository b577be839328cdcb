import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { useCleanup } from '../support/fixtures.js'
import { runBroker, type BrokerProcess } from '../support/process.js'

/** An empty working directory with the given files in it. */
function dirWith (files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'cb-secrets-'))
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content)
  return dir
}

describe('SECRETS_FILE problems are configuration errors (the broker process)', () => {
  const cleanup = useCleanup()
  const kill = async (broker: Pick<BrokerProcess, 'stop'>): Promise<void> => { await broker.stop('SIGKILL') }

  async function startWith (cwd: string, secretsFile: string): Promise<{ code: number | null, stderr: string[] }> {
    const broker = cleanup.add(runBroker({ SECRETS_FILE: secretsFile }, { cwd }), kill)
    const exit = await broker.exited
    return { code: exit.code, stderr: broker.stderr }
  }

  const leaked = 'value-that-must-not-be-printed'

  it.each([
    ['missing', {}, 'absent.json', /^ {2}SECRETS_FILE: cannot read ".*absent\.json" \(ENOENT\); expected a readable JSON file/],
    ['not valid JSON', { 's.json': `{ "secret/a": { "k": "${leaked}" ` }, 's.json', /^ {2}SECRETS_FILE: ".*s\.json" is not valid JSON$/],
    ['not an object', { 's.json': '["x"]' }, 's.json', /^ {2}SECRETS_FILE: ".*s\.json": expected a JSON object of secret paths/],
    ['a nested value', { 's.json': JSON.stringify({ 'secret/a': { k: { deep: leaked } } }) }, 's.json', /^ {2}SECRETS_FILE: ".*s\.json" at secret\/a → k: expected a string, number or boolean value$/]
  ])('%s: exit 78, one line, no stack, no value', async (_name, files, file, expected) => {
    const { code, stderr } = await startWith(dirWith(files), file)
    expect(code).toBe(78)
    expect(stderr[0]).toBe('credential-broker: invalid configuration (1 problem)')
    expect(stderr).toHaveLength(2)
    expect(stderr[1]).toMatch(expected)
    expect(stderr.join('\n')).not.toContain(leaked)
  })

  it('unreadable (a directory): exit 78 naming the reason', async () => {
    const cwd = dirWith()
    mkdirSync(join(cwd, 'secrets.json'))
    const { code, stderr } = await startWith(cwd, 'secrets.json')
    expect(code).toBe(78)
    expect(stderr).toEqual(['credential-broker: invalid configuration (1 problem)', expect.stringMatching(/^ {2}SECRETS_FILE: cannot read ".*secrets\.json" \(EISDIR\)/)])
  })

  it('one line per problem when several entries are wrong', async () => {
    const { code, stderr } = await startWith(dirWith({ 's.json': JSON.stringify({ 'secret/a': 'flat', 'secret/b': { k: null } }) }), 's.json')
    expect(code).toBe(78)
    expect(stderr).toEqual([
      'credential-broker: invalid configuration (2 problems)',
      expect.stringMatching(/SECRETS_FILE: ".*" at secret\/a: expected an object of fields/),
      expect.stringMatching(/SECRETS_FILE: ".*" at secret\/b → k: expected a string, number or boolean value/)
    ])
  })
})
