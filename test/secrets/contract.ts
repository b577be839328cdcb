import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeEach, describe, expect, it } from 'vitest'
import type { VaultConfig } from '../../src/config.js'
import { createFileSecretSource } from '../../src/secrets/file-source.js'
import { createSecretManager, type SecretManager } from '../../src/secrets/secret-manager.js'
import { type SecretSource } from '../../src/secrets/types.js'
import { createVaultSecretSource, type VaultSecretSourceDeps } from '../../src/secrets/vault-source.js'
import { sleep } from '../../src/time.js'
import { tempDir, useCleanup } from '../support/fixtures.js'
import { captureLogs, type CapturedLogs } from '../support/logs.js'
import { waitFor } from '../support/wait.js'
import { testVaultConfig } from '../support/vault/config.js'
import type { VaultTarget, VaultTargetCapabilities } from '../support/vault/targets.js'
import { SecretError } from '../../src/errors.js'

export async function expectSecretError (promise: Promise<unknown>, reason: SecretError['kind']): Promise<SecretError> {
  const error = await promise.then(() => undefined, (err: unknown) => err)
  expect(error).toBeInstanceOf(SecretError)
  expect((error as SecretError).kind).toBe(reason)
  return error as SecretError
}

interface FixtureBase {
  /** A path unique to this fixture (and, for Vault, under the target's prefix). */
  path: (name: string) => string
  /** Writes a new version; returns the version the source should now report. */
  write: (path: string, data: Record<string, string>) => Promise<number>
  /** A started source with the default setup (Vault: a renewable token reading everything under the prefix). */
  source: () => Promise<SecretSource>
  /** Everything this fixture handed out that must never be logged (tokens, secret ids, secret values). */
  readonly sensitive: Set<string>
  readonly captured: CapturedLogs
  close: () => Promise<void>
}

export interface FileFixture extends FixtureBase {
  readonly kind: 'file'
  readonly file: string
}

export interface VaultFixture extends FixtureBase {
  readonly kind: 'vault'
  readonly target: VaultTarget
  /** A source (not started) for this target with the given auth settings. */
  vaultSource: (config: Partial<VaultConfig>, deps?: Partial<VaultSecretSourceDeps>) => SecretSource
}

export type ContractFixture = FileFixture | VaultFixture

function trackSecrets (sensitive: Set<string>, data: Record<string, string>): void {
  for (const value of Object.values(data)) sensitive.add(value)
}

/** A fixture over a Vault target; every source it makes is closed with it. */
export function vaultFixture (target: VaultTarget): VaultFixture {
  const captured = captureLogs()
  const sensitive = new Set<string>()
  const opened: SecretSource[] = []
  const fixture: VaultFixture = {
    kind: 'vault',
    target,
    captured,
    sensitive,
    path: name => `${target.prefix}/${name}`,
    async write (path, data) {
      trackSecrets(sensitive, data)
      return await target.write(path, data)
    },
    vaultSource (config, deps = {}) {
      for (const value of [config.token, config.secretId, config.roleId]) if (value !== undefined) sensitive.add(value)
      const source = createVaultSecretSource({
        config: testVaultConfig(target.addr, config),
        log: captured.log,
        probeIntervalMs: 200,
        retryBaseMs: 100,
        retryMaxMs: 500,
        ...deps
      })
      opened.push(source)
      return source
    },
    async source () {
      const token = await target.createToken({ ttlSeconds: 3600, renewable: true })
      const source = fixture.vaultSource({ token })
      await source.start()
      return source
    },
    async close () {
      for (const source of opened) await source.close()
      await target.close()
    }
  }
  return fixture
}

/** A fixture over a temporary secrets file, rewritten atomically (rename) like a config management tool would. */
export async function fileFixture (): Promise<FileFixture> {
  const captured = captureLogs()
  const sensitive = new Set<string>()
  const dir = await mkdtemp(join(tmpdir(), 'cb-secrets-'))
  const file = join(dir, 'secrets.json')
  await writeFile(file, '{}')
  const versions = new Map<string, number>()
  const opened: SecretSource[] = []
  return {
    kind: 'file',
    file,
    captured,
    sensitive,
    path: name => `local/${name}`,
    async write (path, data) {
      trackSecrets(sensitive, data)
      const content = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>
      content[path] = data
      const next = `${file}.${randomBytes(4).toString('hex')}.tmp`
      await writeFile(next, JSON.stringify(content))
      await rename(next, file)
      const version = (versions.get(path) ?? 0) + 1
      versions.set(path, version)
      return version
    },
    async source () {
      const source = createFileSecretSource({ file, log: captured.log })
      opened.push(source)
      await source.start()
      return source
    },
    async close () {
      for (const source of opened) await source.close()
      await rm(dir, { recursive: true, force: true })
    }
  }
}

function expectNoLeak (fixture: ContractFixture): void {
  for (const line of fixture.captured.lines) {
    for (const value of fixture.sensitive) {
      if (value.length >= 6 && line.includes(value)) throw new Error(`a log line contains a token or secret value: ${line.slice(0, 120)}…`)
    }
  }
}

export interface ContractOptions {
  kind: ContractFixture['kind']
  /** What the target can do; decided before the tests are collected so skips say why. */
  capabilities: VaultTargetCapabilities
  create: () => Promise<ContractFixture>
}

/**
 * The secret-source contract. One suite, run against the stand-in, a real Vault (when there is one) and
 * the file source (the parts that apply). Expiry tests use short TTLs in real time (Vault TTLs are whole
 * seconds), so they take a few seconds each.
 */
export function describeSecretSourceContract (label: string, options: ContractOptions): void {
  const vaultOnly = options.kind !== 'vault'
  const noSeal = vaultOnly || !options.capabilities.seal
  const noKubernetes = vaultOnly || !options.capabilities.kubernetes
  const noStopStart = vaultOnly || !options.capabilities.stopStart

  describe(`secret source contract: ${label}`, () => {
    let fixture: ContractFixture
    const cleanup = useCleanup()
    const manage = (source: SecretSource, intervalMs = 200): SecretManager =>
      cleanup.add(createSecretManager({ source, log: fixture.captured.log, intervalMs }))
    const vault = (): VaultFixture => {
      if (fixture.kind !== 'vault') throw new Error('a Vault test ran against a file fixture')
      return fixture
    }

    beforeEach(async () => {
      const created = await options.create()
      fixture = created
      // Checked last, once everything is closed: a close may log too.
      cleanup.defer(() => { expectNoLeak(created) })
      cleanup.add(created)
    }, 60_000)

    describe('reading', () => {
      it('reads a secret with its version, and the latest version after a new write', async () => {
        const path = fixture.path('providers/kivra')
        const first = await fixture.write(path, { client_id: 'kivra-client', client_secret: `s1-${randomBytes(8).toString('hex')}` })
        const source = await fixture.source()
        const value = await source.read(path)
        expect(value.version).toBe(first)
        expect(value.data.client_id).toBe('kivra-client')
        expect(await source.latestVersion(path)).toBe(first)

        const secondSecret = `s2-${randomBytes(8).toString('hex')}`
        const second = await fixture.write(path, { client_id: 'kivra-client', client_secret: secondSecret })
        expect(second).toBeGreaterThan(first)
        expect(await source.latestVersion(path)).toBe(second)
        const reread = await source.read(path)
        expect(reread).toEqual({ version: second, data: { client_id: 'kivra-client', client_secret: secondSecret } })
        expect(source.health().state).toBe('ok')
      })

      it('answers a missing secret with a not_found SecretError', async () => {
        const source = await fixture.source()
        await expectSecretError(source.read(fixture.path('nothing/here')), 'not_found')
        await expectSecretError(source.latestVersion(fixture.path('nothing/here')), 'not_found')
        // A missing secret is a per-secret problem; the source itself is fine.
        expect(source.health().state).toBe('ok')
      })
    })

    describe('rotation', () => {
      it('sees a new version within one check interval and notifies listeners', async () => {
        const path = fixture.path('providers/kigo')
        await fixture.write(path, { client_secret: `old-${randomBytes(8).toString('hex')}` })
        const manager = manage(await fixture.source(), 200)
        const held = await manager.get(path)
        const rotations: Array<{ path: string, version: number, at: number }> = []
        manager.onRotation((rotatedPath, version) => { rotations.push({ path: rotatedPath, version, at: Date.now() }) })

        const newSecret = `new-${randomBytes(8).toString('hex')}`
        const writtenAt = Date.now()
        const version = await fixture.write(path, { client_secret: newSecret })
        await waitFor('the rotation event', () => rotations.length > 0, { timeout: 3000 })

        expect(rotations).toEqual([{ path, version, at: expect.any(Number) as number }])
        // One 200 ms interval, plus the metadata and data reads.
        expect(rotations[0]!.at - writtenAt).toBeLessThan(200 + 400)
        expect(version).not.toBe(held.version)
        expect((await manager.get(path)).data.client_secret).toBe(newSecret)
      })
    })

    describe('errors', () => {
      it.skipIf(vaultOnly)('answers a path the token may not read with a denied SecretError (Vault only)', async () => {
        const { target } = vault()
        const allowed = fixture.path('allowed/kivra')
        const forbidden = fixture.path('other/kivra')
        await fixture.write(allowed, { client_secret: `a-${randomBytes(8).toString('hex')}` })
        await fixture.write(forbidden, { client_secret: `f-${randomBytes(8).toString('hex')}` })
        const source = vault().vaultSource({ token: await target.createToken({ ttlSeconds: 3600, renewable: true, scope: 'allowed' }) })
        await source.start()

        expect((await source.read(allowed)).version).toBe(1)
        const error = await expectSecretError(source.read(forbidden), 'denied')
        expect(error.message).toMatch(/403/)
        await expectSecretError(source.latestVersion(forbidden), 'denied')
        // The token is fine; only that path is off limits.
        expect(source.health().state).toBe('ok')
      })

      it.skipIf(vaultOnly)('refuses to start with a token Vault does not know (Vault only)', async () => {
        const source = vault().vaultSource({ token: `hvs.${randomBytes(18).toString('hex')}` })
        await expectSecretError(source.start(), 'denied')
        // A failed start releases its timers and connections.
        expect(source.health()).toMatchObject({ state: 'down', detail: 'closed' })
      })
    })

    describe('token renewal and re-login', () => {
      it.skipIf(vaultOnly)('renews a renewable token with renew-self, so it outlives its TTL (Vault only)', async () => {
        const { target } = vault()
        const path = fixture.path('providers/klavi')
        await fixture.write(path, { client_secret: `k-${randomBytes(8).toString('hex')}` })
        const source = vault().vaultSource({ token: await target.createToken({ ttlSeconds: 2, renewable: true }) })
        await source.start()
        await sleep(4500)
        // Health first: a read would hide a missed renewal behind the 403 → re-check path.
        expect(source.health()).toMatchObject({ state: 'ok' })
        if (target.standIn !== undefined) expect(target.standIn.count('POST', 'auth/token/renew-self')).toBeGreaterThanOrEqual(2)
        expect((await source.read(path)).version).toBe(1)
      })

      it.skipIf(vaultOnly)('degrades when a non-renewable token expires, while held secrets keep being served (Vault only)', async () => {
        const { target } = vault()
        const path = fixture.path('providers/sir-giving')
        const data = { hmacSecret: `h-${randomBytes(8).toString('hex')}` }
        await fixture.write(path, data)
        const source = vault().vaultSource({ token: await target.createToken({ ttlSeconds: 2, renewable: false }) })
        await source.start()
        const manager = manage(source)
        await manager.get(path)

        await waitFor('health to degrade', () => source.health().state === 'degraded', { timeout: 5000 })
        expect(source.health().detail).toMatch(/expired/)
        expect((await manager.get(path)).data).toEqual(data)
        await expectSecretError(source.read(path), 'denied')
      })

      it.skipIf(vaultOnly)('logs in again with AppRole when the token reaches its max TTL (Vault only)', async () => {
        const { target } = vault()
        const path = fixture.path('providers/kivra')
        await fixture.write(path, { client_secret: `r-${randomBytes(8).toString('hex')}` })
        const role = await target.createAppRole({ ttlSeconds: 2, maxTtlSeconds: 4 })
        const source = vault().vaultSource({ auth: 'approle', roleId: role.roleId, secretId: role.secretId, approleMount: role.mount })
        await source.start()
        // Past the first token's max TTL. Health first: the new login must have happened proactively,
        // not on demand after a read hit 403.
        await sleep(5500)
        expect(source.health()).toMatchObject({ state: 'ok' })
        if (target.standIn !== undefined) expect(target.standIn.count('POST', `auth/${role.mount}/login`)).toBeGreaterThanOrEqual(2)
        expect((await source.read(path)).version).toBe(1)
      })

      it.skipIf(vaultOnly)('logs in again with AppRole when the token was revoked (Vault only)', async () => {
        const { target } = vault()
        const path = fixture.path('providers/kigo')
        await fixture.write(path, { client_secret: `v-${randomBytes(8).toString('hex')}` })
        const role = await target.createAppRole({ ttlSeconds: 3600, maxTtlSeconds: 7200 })
        const source = vault().vaultSource({ auth: 'approle', roleId: role.roleId, secretId: role.secretId, approleMount: role.mount })
        await source.start()
        await target.revokeLogins(role.mount)
        expect((await source.read(path)).version).toBe(1)
        expect(source.health()).toMatchObject({ state: 'ok' })
        if (target.standIn !== undefined) expect(target.standIn.count('POST', `auth/${role.mount}/login`)).toBe(2)
      })

      it.skipIf(noKubernetes)('logs in with Kubernetes auth, reading the rotating service account token on each login (stand-in only: a real Kubernetes auth method needs a Kubernetes API server for TokenReview)', async () => {
        const standIn = vault().target.standIn
        if (standIn === undefined) throw new Error('Kubernetes auth needs the stand-in')
        const path = fixture.path('providers/klavi')
        await fixture.write(path, { client_secret: `j-${randomBytes(8).toString('hex')}` })
        const dir = await tempDir(cleanup, 'cb-k8s-')
        const tokenFile = join(dir, 'token')
        const firstJwt = `eyJhbGciOiJSUzI1NiJ9.${randomBytes(24).toString('base64url')}.sig1`
        const secondJwt = `eyJhbGciOiJSUzI1NiJ9.${randomBytes(24).toString('base64url')}.sig2`
        fixture.sensitive.add(firstJwt)
        fixture.sensitive.add(secondJwt)
        await writeFile(tokenFile, `${firstJwt}\n`)
        standIn.addKubernetesRole({ role: 'credential-broker', jwts: [firstJwt], tokenTtlSeconds: 2, tokenMaxTtlSeconds: 3, policies: [vault().target.readPolicy] })
        const source = vault().vaultSource({ auth: 'kubernetes', k8sRole: 'credential-broker', k8sTokenPath: tokenFile })
        await source.start()
        expect((await source.read(path)).version).toBe(1)

        // The kubelet rotates the projected token; Vault now only accepts the new one.
        standIn.setKubernetesJwts('credential-broker', [secondJwt])
        await writeFile(tokenFile, `${secondJwt}\n`)
        await sleep(4000)
        expect(source.health()).toMatchObject({ state: 'ok' })
        expect(standIn.count('POST', 'auth/kubernetes/login')).toBeGreaterThanOrEqual(2)
        expect((await source.read(path)).version).toBe(1)
      })

      it.skipIf(noKubernetes)('refuses a Kubernetes login for an unknown role at start (stand-in only)', async () => {
        const dir = await tempDir(cleanup, 'cb-k8s-')
        const tokenFile = join(dir, 'token')
        await writeFile(tokenFile, 'eyJhbGciOiJSUzI1NiJ9.e30.sig')
        vault().target.standIn?.addKubernetesRole({ role: 'someone-else', jwts: ['x'], tokenTtlSeconds: 60 })
        const source = vault().vaultSource({ auth: 'kubernetes', k8sRole: 'credential-broker', k8sTokenPath: tokenFile })
        const error = await expectSecretError(source.start(), 'denied')
        expect(error.message).toMatch(/invalid role name/)
        // Failing fast means no login retries left running in the background.
        await sleep(400)
        expect(vault().target.standIn?.count('POST', 'auth/kubernetes/login')).toBe(1)
      })
    })

    describe('Vault outages', () => {
      it.skipIf(noSeal)('degrades while Vault is sealed, serves held secrets, and recovers once unsealed (Vault only; needs the unseal key)', async () => {
        const { target } = vault()
        const path = fixture.path('providers/kivra')
        const data = { client_secret: `z-${randomBytes(8).toString('hex')}` }
        await fixture.write(path, data)
        const source = await fixture.source()
        const manager = manage(source)
        await manager.get(path)

        await target.seal()
        try {
          await waitFor('health to degrade', () => manager.health().state === 'degraded', { timeout: 5000 })
          expect(manager.health().detail).toMatch(/sealed/)
          expect((await manager.get(path)).data).toEqual(data)
          await expectSecretError(source.read(path), 'unavailable')
        } finally {
          await target.unseal()
        }
        await waitFor('health to recover', () => manager.health().state === 'ok', { timeout: 10_000 })
        expect((await source.read(path)).data).toEqual(data)
      })

      it.skipIf(noStopStart)('degrades while Vault is unreachable, serves held secrets, and recovers when it is back (Vault only; needs an http:// Vault to put behind a proxy)', async () => {
        const { target } = vault()
        const path = fixture.path('providers/kigo')
        const data = { client_secret: `u-${randomBytes(8).toString('hex')}` }
        await fixture.write(path, data)
        const source = await fixture.source()
        const manager = manage(source)
        await manager.get(path)

        await target.stop()
        try {
          await waitFor('health to degrade', () => manager.health().state === 'degraded', { timeout: 5000 })
          expect(manager.health().detail).toMatch(/unreachable/)
          expect((await manager.get(path)).data).toEqual(data)
          await expectSecretError(source.read(path), 'unavailable')
        } finally {
          await target.start()
        }
        await waitFor('health to recover', () => manager.health().state === 'ok', { timeout: 10_000 })
        expect((await source.read(path)).data).toEqual(data)
      })
    })
  })
}
