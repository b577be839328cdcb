import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SecretError } from '../../src/errors.js'
import { inspect } from 'node:util'
import createNodeVault from 'node-vault'
import { describe, expect, it } from 'vitest'
import type { VaultConfig } from '../../src/config.js'
import { serializeError } from '../../src/observability/logger.js'
import { createSecretManager } from '../../src/secrets/secret-manager.js'
import type { SecretSource } from '../../src/secrets/types.js'
import { createVaultSecretSource } from '../../src/secrets/vault-source.js'
import { tempDir, useCleanup } from '../support/fixtures.js'
import { freePort } from '../support/ports.js'
import { sendJson, startScriptedServer } from '../support/scripted-server.js'
import { testVaultConfig } from '../support/vault/config.js'
import { startVaultStandIn } from '../support/vault/stand-in.js'
import { captureLogs, type CapturedLogs } from '../support/logs.js'
import { sleep } from '../../src/time.js'

/** Canaries: values that would only show up in output if a token, login secret or secret value leaked. */
const canaries = {
  token: `hvs.CANARY${randomBytes(16).toString('hex')}`,
  roleId: `role-CANARY-${randomBytes(8).toString('hex')}`,
  secretId: `secret-id-CANARY-${randomBytes(8).toString('hex')}`,
  jwt: `eyJhbGciOiJSUzI1NiJ9.CANARY${randomBytes(12).toString('hex')}.c2ln`,
  clientSecret: `client-secret-CANARY-${randomBytes(8).toString('hex')}`
}

function expectClean (text: string, where: string): void {
  for (const [name, value] of Object.entries(canaries)) {
    if (text.includes(value)) throw new Error(`${where} contains the ${name}: ${text.slice(0, 300)}`)
  }
}

type Failure = 'connection refused' | 'server hangs past the timeout' | 'server answers 500 quoting the request'

/** A Vault address that fails in the given way; its 500 answer echoes our headers and body back. */
async function failingVault (failure: Failure): Promise<{ addr: string, close: () => Promise<void> }> {
  if (failure === 'connection refused') return { addr: `http://127.0.0.1:${await freePort()}`, close: async () => {} }
  const server = await startScriptedServer((request, res) => {
    if (failure === 'server hangs past the timeout') return 'hang'
    sendJson(res, 500, { errors: [`internal error: token=${String(request.headers['x-vault-token'])} body=${request.body}`] })
  })
  return { addr: server.url, close: server.close }
}

describe('no token or secret reaches a log line or an error', () => {
  const cleanup = useCleanup()

  async function tokenFile (): Promise<string> {
    const file = join(await tempDir(cleanup, 'cb-leak-'), 'token')
    await writeFile(file, canaries.jwt)
    return file
  }

  function source (addr: string, auth: VaultConfig['auth'], captured: CapturedLogs, k8sTokenPath = '/nonexistent'): SecretSource {
    return cleanup.add(createVaultSecretSource({
      config: testVaultConfig(addr, { auth, token: canaries.token, roleId: canaries.roleId, secretId: canaries.secretId, k8sRole: 'credential-broker', k8sTokenPath, timeoutMs: 300 }),
      log: captured.log,
      probeIntervalMs: 100,
      retryBaseMs: 50,
      retryMaxMs: 100
    }))
  }

  it('the canary would be caught: node-vault\'s raw error carries the X-Vault-Token header', async () => {
    // Proves the assertions below can fail: this is what passing node-vault's error through would log.
    const raw = createNodeVault({ endpoint: `http://127.0.0.1:${await freePort()}`, token: canaries.token })
    const error = await raw.read('secret/data/x').then(() => undefined, (err: unknown) => err)
    expect(inspect(error, { depth: 6 })).toContain(canaries.token)
  })

  const failures: Failure[] = ['connection refused', 'server hangs past the timeout', 'server answers 500 quoting the request']
  const methods: Array<VaultConfig['auth']> = ['token', 'approle', 'kubernetes']

  for (const failure of failures) {
    for (const method of methods) {
      it(`${failure}, ${method} auth: debug logs, error messages and serialized errors stay clean`, async () => {
        const vault = cleanup.add(await failingVault(failure))
        const captured = captureLogs('debug')
        const secrets = source(vault.addr, method, captured, await tokenFile())
        const manager = cleanup.add(createSecretManager({ source: secrets, log: captured.log, intervalMs: 100 }))

        // Start comes up degraded (or refuses, for a 500 it cannot tell from a refusal); reads fail.
        const errors: unknown[] = []
        await secrets.start().catch((err: unknown) => { errors.push(err) })
        for (const attempt of [secrets.read('secret/providers/kivra'), secrets.latestVersion('secret/providers/kivra'), manager.get('secret/providers/kivra')]) {
          errors.push(await attempt.then(() => new Error('expected a failure'), (err: unknown) => err))
        }
        // Let background retries, probes and checks run and log a few times.
        await sleep(700)

        expect(errors.length).toBeGreaterThanOrEqual(3)
        for (const error of errors) {
          expect(error).toBeInstanceOf(Error)
          expect(error).toBeInstanceOf(SecretError)
          expect((error as Error).cause).toBeUndefined()
          expectClean((error as Error).message, 'an error message')
          expectClean(JSON.stringify(serializeError(error)), 'a serialized error')
          expectClean(inspect(error, { depth: 6 }), 'an inspected error')
        }
        expect(secrets.health().state).not.toBe('ok')
        expectClean(JSON.stringify(secrets.health()), 'the health detail')
        expect(captured.lines.length).toBeGreaterThan(0)
        expect(captured.lines.some(line => line.includes('"level":20'))).toBe(true)
        for (const line of captured.lines) expectClean(line, 'a log line')
      })
    }
  }

  it('a healthy run with renewals, re-logins and rotations logs no token or secret value either', async () => {
    const vault = cleanup.add(await startVaultStandIn())
    vault.createPolicy('read', ['secret/data/*', 'secret/metadata/*'])
    vault.addAppRole({ roleName: 'broker', roleId: canaries.roleId, secretId: canaries.secretId, tokenTtlSeconds: 1, tokenMaxTtlSeconds: 2, policies: ['read'] })
    vault.writeSecret('secret/providers/kivra', { client_id: 'kivra', client_secret: canaries.clientSecret })
    const captured = captureLogs('debug')
    const secrets = source(vault.url, 'approle', captured)
    const manager = cleanup.add(createSecretManager({ source: secrets, log: captured.log, intervalMs: 100 }))
    await manager.start()
    expect((await manager.get('secret/providers/kivra')).data.client_secret).toBe(canaries.clientSecret)
    vault.writeSecret('secret/providers/kivra', { client_id: 'kivra', client_secret: `${canaries.clientSecret}-2` })
    await sleep(2500)
    expect((await manager.get('secret/providers/kivra')).version).toBe(2)
    expect(vault.count('POST', 'auth/approle/login')).toBeGreaterThanOrEqual(2)
    for (const line of captured.lines) expectClean(line, 'a log line')
  })
})
