import type { Logger } from 'pino'
import { StoreError } from '../errors.js'
import type { GrantStore, StoredGrant } from '../store/types.js'

/**
 * The grant store as the engine uses it: an unreachable store is not an error but an absence (the replica
 * serves from its local cache and refreshes on its own), said once per outage in the log.
 */
export interface SharedStore {
  readonly store: GrantStore
  /** The stored grant of a key; undefined when there is none or the store cannot be reached. */
  read: (key: string) => Promise<StoredGrant | undefined>
  /** Records a store failure seen by another call (a lease or a write); rethrows anything that is not a StoreError. */
  noteFailure: (err: unknown) => void
}

export function createSharedStore (store: GrantStore, log: Logger): SharedStore {
  let down = false
  const noteFailure = (err: unknown): void => {
    if (!(err instanceof StoreError)) throw err
    if (!down) { down = true; log.warn({ err }, 'grant store unreachable; serving from the local cache') }
  }
  return {
    store,
    noteFailure,
    async read (key) {
      try {
        const stored = await store.get(key)
        if (down) { down = false; log.info({}, 'grant store reachable again') }
        return stored ?? undefined
      } catch (err) {
        noteFailure(err)
        return undefined
      }
    }
  }
}
