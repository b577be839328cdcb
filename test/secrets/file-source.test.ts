import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { beforeEach, describe, expect, it } from 'vitest'
import type { Config } from '../../src/config.js'
import { serializeError } from '../../src/observability/logger.js'
import { createFileSecretSource } from '../../src/secrets/file-source.js'
import { createSecretSource } from '../../src/secrets/index.js'
import type { SecretSource } from '../../src/secrets/types.js'
import { tempDir, useCleanup } from '../support/fixtures.js'
import { captureLogs, type CapturedLogs } from '../support/logs.js'
import { testVaultConfig } from '../support/vault/config.js'
import { expectSecretError } from './contract.js'

describe('file secret source (embedded mode)', () => {
  let file: string
  let captured: CapturedLogs
  const cleanup = useCleanup()

  beforeEach(async () => {
    file = join(await tempDir(cleanup, 'cb-file-'), 'secrets.json')
    captured = captureLogs('debug')
  })
  function source (): SecretSource {
    return cleanup.add(createFileSecretSource({ file, log: captured.log }))
  }

  it('bumps the version of a path only when its entry changes', async () => {
    await writeFile(file, JSON.stringify({ 'local/a': { secret: 'a1' }, 'local/b': { secret: 'b1' } }))
    const secrets = source()
    await secrets.start()
    expect(await secrets.read('local/a')).toEqual({ version: 1, data: { secret: 'a1' } })
    await writeFile(file, JSON.stringify({ 'local/a': { secret: 'a2' }, 'local/b': { secret: 'b1' }, 'local/c': { port: 443 } }))
    expect(await secrets.latestVersion('local/a')).toBe(2)
    expect(await secrets.latestVersion('local/b')).toBe(1)
    expect(await secrets.read('local/c')).toEqual({ version: 1, data: { port: '443' } })
  })

  it('says loudly at start that secrets come from a local file', async () => {
    await writeFile(file, '{}')
    await source().start()
    expect(captured.lines.some(line => line.includes('"level":40') && line.includes('embedded mode'))).toBe(true)
  })

  it('refuses invalid JSON without echoing the file content', async () => {
    const value = `leaky-${randomBytes(8).toString('hex')}`
    await writeFile(file, `{ "local/a": { "secret": "${value}" `)
    const error = await expectSecretError(source().start(), 'invalid')
    expect(error.message).toMatch(/not valid JSON/)
    expect(JSON.stringify(serializeError(error))).not.toContain(value)
    for (const line of captured.lines) expect(line).not.toContain(value)
  })

  it('refuses an entry that is not an object of strings, naming the path and field, not the value', async () => {
    const value = `nested-${randomBytes(8).toString('hex')}`
    await writeFile(file, JSON.stringify({ 'local/a': { secret: { nested: value } } }))
    const error = await expectSecretError(source().start(), 'invalid')
    expect(error.message).toContain('local/a → secret')
    expect(error.message).not.toContain(value)
  })

  it('reports an unreadable file as unavailable, degrades, and recovers when the file is fixed', async () => {
    const secrets = source()
    await expectSecretError(secrets.start(), 'unavailable')
    expect(secrets.health().state).toBe('degraded')
    expect(secrets.health().detail).toMatch(/ENOENT/)
    await writeFile(file, JSON.stringify({ 'local/a': { secret: 'a1' } }))
    expect((await secrets.read('local/a')).data.secret).toBe('a1')
    expect(secrets.health()).toEqual({ state: 'ok' })
  })

  it('re-adding a removed path still gives it a newer version', async () => {
    await writeFile(file, JSON.stringify({ 'local/a': { secret: 'a1' } }))
    const secrets = source()
    await secrets.start()
    await writeFile(file, JSON.stringify({}))
    await expectSecretError(secrets.read('local/a'), 'not_found')
    await writeFile(file, JSON.stringify({ 'local/a': { secret: 'a1' } }))
    expect(await secrets.latestVersion('local/a')).toBe(2)
  })
})

describe('createSecretSource', () => {
  const log = captureLogs('silent').log
  const base: Pick<Config, 'vault' | 'secretsFile' | 'usingExampleSecrets'> = { vault: undefined, secretsFile: undefined, usingExampleSecrets: false }

  it('chooses Vault when VAULT_ADDR is configured', async () => {
    const source = createSecretSource({
      ...base,
      vault: testVaultConfig('http://127.0.0.1:1', { token: 'hvs.x', timeoutMs: 500 })
    }, log)
    expect(source.kind).toBe('vault')
    expect(source.health().state).toBe('down')
    await source.close()
  })

  it('chooses the file otherwise, and refuses when neither is configured', async () => {
    const source = createSecretSource({ ...base, secretsFile: '/nonexistent/secrets.json' }, log)
    expect(source.kind).toBe('file')
    await source.close()
    expect(() => createSecretSource(base, log)).toThrow(/VAULT_ADDR/)
  })
})
