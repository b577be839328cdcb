import { randomUUID } from 'node:crypto'
import { pino, type Logger } from 'pino'
import type { Grant } from '../providers/types.js'
import type { GrantCipher, GrantEnvelope } from './encryption.js'
import { notifyListeners, type GrantListener } from './listeners.js'
import type { GrantStore, Lease, StoredGrant } from './types.js'
import { checkGrant, checkGrantKey, checkLeaseTtl, grantTimeToLive } from './validate.js'
import { StoreError } from '../errors.js'

export interface MemoryGrantStoreDeps {
  /** Current time in epoch milliseconds; leases and grants expire by this clock. */
  now?: (() => number) | undefined
  /** When given, grants are kept sealed in memory like in Redis; by default they are plain objects. */
  cipher?: GrantCipher | undefined
  /** For listener failures; silent when absent. */
  log?: Logger | undefined
}

export interface MemoryGrantStore extends GrantStore {
  readonly kind: 'memory'
  /** Always ready; present so callers can treat every store alike. */
  ready: () => Promise<void>
}

interface Entry {
  fence: number
  grant?: Grant
  sealed?: GrantEnvelope
}

/**
 * The embedded grant store: process memory, one replica only. It keeps the Redis store's semantics so the
 * broker behaves the same in both modes: leases expire by the clock, every lease gets a larger fence,
 * writes and deletes are refused from a stale fence, grants vanish when they expire, and listeners are
 * told of every write asynchronously, as pub/sub would.
 */
export function createMemoryGrantStore (deps: MemoryGrantStoreDeps = {}): MemoryGrantStore {
  const now = deps.now ?? Date.now
  const cipher = deps.cipher
  const log = deps.log ?? pino({ level: 'silent' })
  const leases = new Map<string, { owner: string, expiresAt: number }>()
  // Fences outlive leases and grants, like the Redis fence key: they must only ever grow.
  const fences = new Map<string, number>()
  const grants = new Map<string, Entry>()
  const listeners = new Set<GrantListener>()
  const pending = new Set<NodeJS.Immediate>()
  let closed = false

  const assertOpen = (): void => {
    if (closed) throw new StoreError('closed', 'grant store is closed')
  }

  const notify = (key: string, fence?: number): void => {
    // Deferred like a pub/sub message: a listener never runs inside the writer's call.
    const handle = setImmediate(() => {
      pending.delete(handle)
      notifyListeners(listeners, key, fence, log)
    })
    pending.add(handle)
  }

  const currentFence = (key: string): number => fences.get(key) ?? 0

  return {
    kind: 'memory',

    async ready () {
      assertOpen()
    },

    async get (key) {
      assertOpen()
      checkGrantKey(key)
      const entry = grants.get(key)
      if (entry === undefined) return null
      const grant = entry.sealed !== undefined && cipher !== undefined ? cipher.open(entry.sealed, key) : entry.grant
      if (grant === undefined || grant === null) return null
      if (grantTimeToLive(grant, now()) <= 0) {
        grants.delete(key)
        return null
      }
      return { grant: { ...grant }, fence: entry.fence } satisfies StoredGrant
    },

    async acquireLease (key, ttlMs) {
      assertOpen()
      checkGrantKey(key)
      const ttl = checkLeaseTtl(ttlMs)
      const held = leases.get(key)
      if (held !== undefined && held.expiresAt > now()) return null
      const fence = currentFence(key) + 1
      fences.set(key, fence)
      const lease: Lease = { key, owner: randomUUID(), fence }
      leases.set(key, { owner: lease.owner, expiresAt: now() + ttl })
      return lease
    },

    async leaseRemainingMs (key) {
      assertOpen()
      checkGrantKey(key)
      const held = leases.get(key)
      return held === undefined ? 0 : Math.max(0, held.expiresAt - now())
    },

    async renewLease (lease, ttlMs) {
      assertOpen()
      checkGrantKey(lease.key)
      const held = leases.get(lease.key)
      if (held === undefined || held.owner !== lease.owner || held.expiresAt <= now()) return false
      held.expiresAt = now() + checkLeaseTtl(ttlMs)
      return true
    },

    async releaseLease (lease, options) {
      assertOpen()
      checkGrantKey(lease.key)
      if (leases.get(lease.key)?.owner === lease.owner) {
        leases.delete(lease.key)
        if (options?.announce === true) notify(lease.key) // like the Redis store: waiters look again at once
      }
    },

    async putGrant (lease, grant) {
      assertOpen()
      checkGrantKey(lease.key)
      const checked = checkGrant(grant)
      if (grantTimeToLive(checked, now()) <= 0) {
        log.warn({ key: lease.key }, 'refused to store an already expired grant')
        return false
      }
      if (currentFence(lease.key) !== lease.fence) return false
      grants.set(lease.key, cipher === undefined
        ? { fence: lease.fence, grant: { ...checked } }
        : { fence: lease.fence, sealed: cipher.seal(checked, lease.key) })
      notify(lease.key, lease.fence)
      return true
    },

    async deleteGrant (lease) {
      assertOpen()
      checkGrantKey(lease.key)
      if (currentFence(lease.key) !== lease.fence) return false
      grants.delete(lease.key)
      notify(lease.key)
      return true
    },

    onGrant (listener) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    },

    async health () {
      return closed ? { state: 'down', detail: 'closed' } : { state: 'up' }
    },

    async close () {
      closed = true
      for (const handle of pending) clearImmediate(handle)
      pending.clear()
      listeners.clear()
      leases.clear()
      grants.clear()
    }
  }
}
