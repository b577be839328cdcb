import type { SecretsLog } from './log.js'
import type { PreviousVersion, SecretSource, SecretSourceHealth, SecretValue } from './types.js'
import { systemTimers, type Timers } from '../time.js'
import { SecretError } from '../errors.js'

/** Called once per new version seen for a path in use: the broker re-mints with the new secret. */
export type RotationListener = (path: string, version: number) => void

export interface SecretManager {
  /** Starts the source (Vault login and renewal). Reads also work before start; they log in lazily. */
  start: () => Promise<void>
  /** The held secret; read from the source on first use (concurrent first reads share one read). */
  get: (path: string) => Promise<SecretValue>
  /** The held secret without any I/O, or undefined when the path was never read. */
  peek: (path: string) => SecretValue | undefined
  /** The version before `current`, if the source keeps readable versions (SecretSource.previousVersion). */
  previous: (path: string, current: number) => Promise<PreviousVersion | undefined>
  /**
   * Forces one fresh read (after a mint failed with a permanent error: the secret may have rotated).
   * Concurrent rereads of a path share one read. Throws when the source cannot answer; the held
   * secret stays in place for get().
   */
  reread: (path: string) => Promise<SecretValue>
  /** Subscribes to new versions, whether found by the periodic check or by reread(). Returns an unsubscribe. */
  onRotation: (listener: RotationListener) => () => void
  /** Runs the rotation check now (the timer runs it every intervalMs). Never throws. */
  check: () => Promise<void>
  health: () => SecretSourceHealth
  /** Stops the check and closes the source (the manager owns the source it was given). */
  close: () => Promise<void>
}

export interface SecretManagerDeps {
  source: SecretSource
  log: SecretsLog
  /** Rotation check period; SECRET_CHECK_INTERVAL_SECONDS × 1000 in the app. Default 60 s. */
  intervalMs?: number
  /** Epoch milliseconds. */
  now?: () => number
  timers?: Timers
}

interface Held {
  value: SecretValue
  /** Order in which the read that produced it started: a slower, older read never replaces a newer one. */
  sequence: number
  readAt: number
}

/**
 * Holds the secrets the broker uses and notices rotations. When the source is unavailable the held
 * secrets keep being served (refreshes go on with what is in memory); the periodic check only logs.
 */
export function createSecretManager (deps: SecretManagerDeps): SecretManager {
  const { source, log } = deps
  const intervalMs = deps.intervalMs ?? 60_000
  const now = deps.now ?? Date.now
  const timers = deps.timers ?? systemTimers
  const held = new Map<string, Held>()
  const firstReads = new Map<string, Promise<SecretValue>>()
  const rereads = new Map<string, Promise<SecretValue>>()
  const listeners = new Set<RotationListener>()
  let sequence = 0
  let timer: unknown
  let checking: Promise<void> | undefined
  let closed = false

  function accept (path: string, value: SecretValue, readSequence: number): SecretValue {
    const previous = held.get(path)
    if (previous !== undefined && previous.sequence > readSequence) return previous.value
    held.set(path, { value, sequence: readSequence, readAt: now() })
    if (previous !== undefined && previous.value.version !== value.version) {
      log.info({ secretPath: path, fromVersion: previous.value.version, toVersion: value.version }, 'secret rotated')
      for (const listener of listeners) {
        try {
          listener(path, value.version)
        } catch (err) {
          log.error({ secretPath: path, err }, 'rotation listener failed')
        }
      }
    }
    return value
  }

  async function readFresh (path: string): Promise<SecretValue> {
    sequence += 1
    const readSequence = sequence
    const value = await source.read(path)
    return accept(path, value, readSequence)
  }

  function shared (inflight: Map<string, Promise<SecretValue>>, path: string): Promise<SecretValue> {
    let pending = inflight.get(path)
    if (pending === undefined) {
      pending = readFresh(path).finally(() => { inflight.delete(path) })
      inflight.set(path, pending)
    }
    return pending
  }

  async function checkPath (path: string, current: SecretValue): Promise<void> {
    try {
      const latest = await source.latestVersion(path)
      if (latest === current.version) return
      await shared(rereads, path)
    } catch (err) {
      // Unavailable is already reported (once) by the source and in health; other errors are per secret.
      const unavailable = err instanceof SecretError && err.kind === 'unavailable'
      if (unavailable) log.debug({ secretPath: path, err }, 'secret rotation check skipped; source unavailable')
      else log.warn({ secretPath: path, err }, 'secret rotation check failed; keeping the held version')
    }
  }

  async function check (): Promise<void> {
    if (closed) return
    checking ??= (async () => {
      try {
        await Promise.all([...held.entries()].map(async ([path, entry]) => { await checkPath(path, entry.value) }))
      } finally {
        checking = undefined
      }
    })()
    await checking
  }

  function scheduleCheck (): void {
    if (closed) return
    timer = timers.setTimer(() => {
      check().catch((err: unknown) => { log.error({ err }, 'secret rotation check crashed') }).finally(scheduleCheck)
    }, intervalMs)
  }
  scheduleCheck()

  return {
    start: async () => { await source.start() },

    async get (path) {
      if (closed) throw new SecretError('unavailable', 'the secret manager is closed')
      const entry = held.get(path)
      if (entry !== undefined) return entry.value
      return await shared(firstReads, path)
    },

    peek: path => held.get(path)?.value,

    async previous (path, current) {
      if (closed) throw new SecretError('unavailable', 'the secret manager is closed')
      return await source.previousVersion?.(path, current)
    },

    async reread (path) {
      if (closed) throw new SecretError('unavailable', 'the secret manager is closed')
      return await shared(rereads, path)
    },

    onRotation (listener) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    },

    check,

    health: () => source.health(),

    async close () {
      if (closed) return
      closed = true
      if (timer !== undefined) timers.clearTimer(timer)
      timer = undefined
      await checking?.catch(() => {})
      listeners.clear()
      await source.close()
    }
  }
}
