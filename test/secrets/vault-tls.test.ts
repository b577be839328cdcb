import { mkdtempSync, writeFileSync, copyFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import type { SecretSource } from '../../src/secrets/types.js'
import { createVaultSecretSource } from '../../src/secrets/vault-source.js'
import { buildTestApp, exampleApiKey, sha256Hex, type TestApp } from '../support/app.js'
import { startKivraStandIn, type KivraStandIn } from '../support/providers/index.js'
import { startVaultStandIn, type VaultStandIn } from '../support/vault/stand-in.js'
import { createTestPki, type TestPki } from '../support/vault/tls.js'
import { expectSecretError } from './contract.js'
import { captureLogs } from '../support/logs.js'
import { ConfigError } from '../../src/errors.js'

/* Vault over TLS with a private CA (VAULT_CACERT, VAULT_CAPATH), against the stand-in serving HTTPS. */

const emptyDir = (): string => mkdtempSync(join(tmpdir(), 'cb-cwd-'))

describe('Vault TLS with a custom CA', () => {
  let pki: TestPki
  let otherPki: TestPki
  let vault: VaultStandIn
  let token: string
  const sources: SecretSource[] = []

  beforeAll(async () => {
    pki = createTestPki()
    otherPki = createTestPki('some other CA')
    vault = await startVaultStandIn({ tls: { key: pki.serverKey, cert: pki.serverCert } })
    vault.createPolicy('read', ['secret/data/*', 'secret/metadata/*'])
    vault.writeSecret('secret/providers/kivra', { client_id: 'kivra-id', client_secret: 'kivra-secret' })
    token = vault.createToken({ policies: ['read'] })
  })
  afterEach(async () => { for (const source of sources.splice(0)) await source.close() })
  afterAll(async () => { await vault.close() })

  function sourceFor (env: Record<string, string>): SecretSource {
    const config = loadConfig({ VAULT_ADDR: vault.url, VAULT_TOKEN: token, VAULT_TIMEOUT_MS: '2000', ...env }, emptyDir())
    const source = createVaultSecretSource({ config: config.vault!, log: captureLogs('silent').log, probeIntervalMs: 60_000 })
    sources.push(source)
    return source
  }

  it('is an https:// stand-in whose certificate the system CAs do not trust', async () => {
    expect(vault.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    const source = sourceFor({})
    await source.start() // unreachable at start: comes up degraded
    const error = await expectSecretError(source.read('secret/providers/kivra'), 'unavailable')
    expect(error.message).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|CERT/)
  })

  it('VAULT_CACERT: trusts the CA in the file and reads secrets', async () => {
    const source = sourceFor({ VAULT_CACERT: pki.caCertFile })
    await source.start()
    expect(source.health()).toEqual({ state: 'ok', authenticated: true })
    expect((await source.read('secret/providers/kivra')).data).toEqual({ client_id: 'kivra-id', client_secret: 'kivra-secret' })
  })

  it('VAULT_CACERT of another CA: refused (the file replaces the system CAs, it does not widen them)', async () => {
    const source = sourceFor({ VAULT_CACERT: otherPki.caCertFile })
    await source.start()
    await expectSecretError(source.read('secret/providers/kivra'), 'unavailable')
  })

  it('VAULT_CAPATH: trusts the CAs in the directory (other files there are ignored)', async () => {
    const dir = emptyDir()
    copyFileSync(otherPki.caCertFile, join(dir, 'a-other.pem'))
    copyFileSync(pki.caCertFile, join(dir, 'b-ours.pem'))
    writeFileSync(join(dir, 'README'), 'CA bundle for Vault\n')
    const source = sourceFor({ VAULT_CAPATH: dir })
    await source.start()
    expect((await source.read('secret/providers/kivra')).version).toBe(1)
  })

  it('VAULT_CACERT wins over VAULT_CAPATH, as for the Vault CLI', async () => {
    const dir = emptyDir()
    copyFileSync(pki.caCertFile, join(dir, 'ours.pem'))
    const source = sourceFor({ VAULT_CACERT: otherPki.caCertFile, VAULT_CAPATH: dir })
    await source.start()
    await expectSecretError(source.read('secret/providers/kivra'), 'unavailable')
  })

  it('reports unreadable or certificate-less CA settings as configuration problems, one line each', () => {
    const problems = (env: Record<string, string>): string[] => {
      try {
        loadConfig({ VAULT_ADDR: vault.url, VAULT_TOKEN: token, ...env }, emptyDir())
      } catch (err) {
        if (err instanceof ConfigError) return [...err.problems]
        throw err
      }
      return []
    }
    const dir = emptyDir()
    const notPem = join(dir, 'not.pem')
    writeFileSync(notPem, 'hello\n')
    const broken = join(dir, 'broken.pem')
    writeFileSync(broken, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')
    expect(problems({ VAULT_CACERT: join(dir, 'missing.pem') })).toEqual([expect.stringMatching(/^VAULT_CACERT: cannot read ".*missing\.pem" \(ENOENT\)/)])
    expect(problems({ VAULT_CACERT: notPem })).toEqual([expect.stringMatching(/^VAULT_CACERT: ".*not\.pem" holds no PEM certificate/)])
    expect(problems({ VAULT_CACERT: broken })).toEqual([expect.stringMatching(/^VAULT_CACERT ".*broken\.pem": certificate 1 is not a valid PEM certificate/)])
    expect(problems({ VAULT_CAPATH: emptyDir() })).toEqual([expect.stringMatching(/^VAULT_CAPATH: ".*" holds no PEM certificate/)])
    expect(problems({ VAULT_CAPATH: join(dir, 'nope') })).toEqual([expect.stringMatching(/^VAULT_CAPATH: cannot read the directory/)])
  })
})

describe('the broker on a Vault behind TLS, reading a KV mount whose name has a slash', () => {
  let testApp: TestApp | undefined
  let vault: VaultStandIn | undefined
  let kivra: KivraStandIn | undefined
  afterEach(async () => {
    await testApp?.close()
    await vault?.close()
    await kivra?.close()
  })

  it('serves tokens minted with the secret at kv/platform:providers/kivra, encryption key from the same mount', async () => {
    const pki = createTestPki()
    kivra = await startKivraStandIn()
    vault = await startVaultStandIn({ tls: { key: pki.serverKey, cert: pki.serverCert } })
    vault.addKvMount('kv/platform')
    vault.createPolicy('broker', ['kv/platform/data/providers/*', 'kv/platform/metadata/providers/*', 'kv/platform/data/broker/*', 'kv/platform/metadata/broker/*'])
    vault.writeSecret('kv/platform:providers/kivra', { ...kivra.secret } as Record<string, string>)
    vault.writeSecret('kv/platform:broker/token-key', { keys: `k1:${Buffer.alloc(32, 7).toString('base64')}` })
    testApp = await buildTestApp({
      credentialsFile: {
        callers: [{ id: 'service', api_key_sha256: sha256Hex(exampleApiKey) }],
        credentials: [{ id: 'kivra', provider: 'kivra', environment: 'sandbox', secret: 'kv/platform:providers/kivra', base_url: kivra.url, allowed_callers: ['service'] }]
      },
      env: {
        VAULT_ADDR: vault.url,
        VAULT_TOKEN: vault.createToken({ policies: ['broker'] }),
        VAULT_CACERT: pki.caCertFile,
        TOKEN_ENCRYPTION_KEY: 'vault:kv/platform:broker/token-key#keys'
      }
    })
    const answer = await testApp.app.inject({ url: '/v1/credentials/kivra/token', headers: { authorization: `Bearer ${exampleApiKey}` } })
    expect(answer.statusCode).toBe(200)
    expect(kivra.isTokenValid((answer.json() as { access_token: string }).access_token)).toBe(true)
    expect(vault.count('GET', 'kv/platform/data/providers/kivra')).toBeGreaterThanOrEqual(1)
    expect(vault.count('GET', 'kv/platform/data/broker/token-key')).toBe(1)
  })
})
