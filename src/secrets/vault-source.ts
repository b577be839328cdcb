import type { SecretsLog } from './log.js'
import type { VaultConfig } from '../config.js'
import { type SecretSource, type SecretSourceHealth } from './types.js'
import { createVaultAuth, type VaultAuthDeps } from './vault-auth.js'
import { systemTimers, type Timers } from '../time.js'
import { createVaultClient, VaultRequestError, type VaultClient } from './vault-client.js'
import { SecretError } from '../errors.js'
import { parseSecretPath } from './secret-path.js'

export interface VaultSecretSourceDeps {
  config: VaultConfig
  log: SecretsLog
  /** Epoch milliseconds; shared with token renewal. */
  now?: () => number
  timers?: Timers
  random?: () => number
  readTokenFile?: VaultAuthDeps['readTokenFile']
  retryBaseMs?: number
  retryMaxMs?: number
  /** How often to look at Vault again while it is failing, so health recovers without traffic. */
  probeIntervalMs?: number
  /** Replaces the node-vault client (tests). */
  client?: VaultClient
}

/** The KV v2 mount and the path inside it (secret-path.ts), or a SecretError ('invalid'). */
export function splitSecretPath (path: string): { mount: string, key: string } {
  const parsed = parseSecretPath(path)
  if (parsed === undefined) throw new SecretError('invalid', `secret path "${path}" is not "<mount>/<path>" or "<mount>:<path>"`)
  return parsed
}

function describeFailure (err: SecretError): string {
  if (err instanceof VaultRequestError) {
    if (err.sealed) return 'Vault is sealed'
    if (err.status !== undefined) return `Vault answered ${err.status}`
    if (err.code === 'ECONNABORTED' || err.code === 'ETIMEDOUT') return 'Vault did not answer in time'
    if (err.code !== undefined) return `Vault unreachable (${err.code})`
  }
  return 'Vault unavailable'
}

/**
 * The Vault KV v2 secret source. `read("secret/providers/kivra")` is GET secret/data/providers/kivra;
 * `latestVersion` is GET secret/metadata/providers/kivra (needs `read` on the metadata path in the
 * policy). Health is "ok" while authenticated and the last call reached Vault, "degraded" while Vault is
 * unreachable or sealed or the token is at risk, "down" before the first contact and after close.
 * It recovers by itself: while degraded it probes sys/health and the token every `probeIntervalMs`.
 */
export function createVaultSecretSource (deps: VaultSecretSourceDeps): SecretSource {
  const { config, log } = deps
  const timers = deps.timers ?? systemTimers
  const probeIntervalMs = deps.probeIntervalMs ?? 5000
  const client = deps.client ?? createVaultClient({ addr: config.addr, namespace: config.namespace, timeoutMs: config.timeoutMs, ca: config.ca, log })
  const auth = createVaultAuth({
    client,
    config,
    log,
    now: deps.now,
    timers,
    random: deps.random,
    readTokenFile: deps.readTokenFile,
    retryBaseMs: deps.retryBaseMs,
    retryMaxMs: deps.retryMaxMs
  })
  const host = (() => { try { return new URL(config.addr).host } catch { return 'invalid address' } })()

  let contacted = false
  let closed = false
  /** Why the last call failed to reach Vault; cleared by the next call that does. */
  let failure: string | undefined
  let probeTimer: unknown

  function noteSuccess (): void {
    contacted = true
    if (failure !== undefined) log.info({ vault: host }, 'vault reachable again')
    failure = undefined
  }

  function noteFailure (err: unknown): void {
    if (!(err instanceof SecretError) || err.kind !== 'unavailable') {
      // Vault answered (404, 403 on a path, a bad shape): it is reachable; the problem is per secret.
      if (err instanceof VaultRequestError && err.status !== undefined) noteSuccess()
      return
    }
    contacted = true
    const detail = describeFailure(err)
    // The source does not know what the secret manager holds: say only what is true here (secrets already
    // read stay in use; the manager logs what it keeps when a rotation check fails).
    if (failure !== detail) log.warn({ vault: host, err }, 'vault unavailable; reads from it fail until it recovers')
    failure = detail
    scheduleProbe()
  }

  function scheduleProbe (): void {
    if (closed || probeTimer !== undefined) return
    probeTimer = timers.setTimer(() => {
      probeTimer = undefined
      probe().catch((err: unknown) => { log.error({ err }, 'vault probe failed unexpectedly') })
    }, probeIntervalMs)
  }

  async function probe (): Promise<void> {
    if (closed) return
    try {
      const server = await client.health()
      if (server.sealed) {
        noteFailure(new VaultRequestError('unavailable', 'Vault is sealed', { status: 503, sealed: true }))
        return
      }
      await auth.ensure()
      try {
        await client.lookupSelf()
      } catch (err) {
        if (!(err instanceof SecretError) || err.kind !== 'denied') throw err
        await auth.recover()
      }
      noteSuccess()
    } catch (err) {
      // Unavailable: noteFailure schedules the next probe. A refused login is retried by the auth layer
      // itself, and health follows its status; a refused static token cannot recover by probing.
      noteFailure(err)
    }
  }

  function closeNow (): void {
    if (closed) return
    closed = true
    if (probeTimer !== undefined) timers.clearTimer(probeTimer)
    probeTimer = undefined
    auth.close()
    client.close()
  }

  /** One Vault call: with a token, retried once after a 403 that turns out to be a dead token. */
  async function withVault<T> (call: () => Promise<T>): Promise<T> {
    if (closed) throw new SecretError('unavailable', 'the Vault secret source is closed')
    try {
      await auth.ensure()
      let result: T
      try {
        result = await call()
      } catch (err) {
        if (!(err instanceof SecretError) || err.kind !== 'denied' || !(await auth.recover())) throw err
        result = await call()
      }
      noteSuccess()
      return result
    } catch (err) {
      noteFailure(err)
      throw err
    }
  }

  return {
    kind: 'vault',

    async start () {
      if (closed) throw new SecretError('unavailable', 'the Vault secret source is closed')
      try {
        await auth.login()
        noteSuccess()
        log.info({ vault: host, method: config.auth, namespace: config.namespace }, 'vault secret source ready')
      } catch (err) {
        // Unreachable or sealed at start: come up degraded and keep trying; the broker can serve
        // grants already in the store. A refused token or role is a configuration error: fail fast.
        if (err instanceof SecretError && err.kind === 'unavailable') {
          noteFailure(err)
          return
        }
        // The caller will not get a source to close: release timers (login retries) and sockets now.
        closeNow()
        throw err
      }
    },

    async read (path) {
      const { mount, key } = splitSecretPath(path)
      return await withVault(async () => await client.readKv(mount, key))
    },

    async latestVersion (path) {
      const { mount, key } = splitSecretPath(path)
      return await withVault(async () => await client.readKvVersion(mount, key))
    },

    async previousVersion (path, current) {
      const { mount, key } = splitSecretPath(path)
      const metadata = await withVault(async () => await client.readKvMetadata(mount, key))
      const currentCreatedAt = metadata.versions.get(current)?.createdAt
      const previous = metadata.versions.get(current - 1)
      if (currentCreatedAt === undefined || previous?.readable !== true) return undefined
      const value = await withVault(async () => await client.readKv(mount, key, current - 1))
      return { value, currentCreatedAt }
    },

    health (): SecretSourceHealth {
      if (closed) return { state: 'down', detail: 'closed', authenticated: false }
      const status = auth.status()
      if (!status.authenticated) {
        if (!contacted && status.problem === undefined) return { state: 'down', detail: 'Vault not contacted yet', authenticated: false }
        return { state: 'degraded', detail: failure ?? status.problem ?? 'not authenticated to Vault', authenticated: false }
      }
      if (failure !== undefined) return { state: 'degraded', detail: failure, authenticated: true }
      if (status.problem !== undefined) return { state: 'degraded', detail: status.problem, authenticated: true }
      return { state: 'ok', authenticated: true }
    },

    async close () {
      closeNow()
    }
  }
}
