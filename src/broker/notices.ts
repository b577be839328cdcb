/**
 * What the broker hears from outside: another replica's grant notice (wake the waiters, adopt the newer
 * grant) and a new secret version (re-mint with it at once).
 */
import type { Logger } from 'pino'
import type { Adopt } from './cluster-refresh.js'
import type { CredentialTable } from './credential-table.js'
import type { Lifecycle } from './lifecycle.js'
import type { SharedStore } from './shared-store.js'
import type { SingleFlight } from './single-flight.js'
import type { BrokerObserver, BrokerSecrets } from './types.js'

export interface NoticeDeps {
  table: CredentialTable
  shared: SharedStore
  secrets: BrokerSecrets
  flights: SingleFlight
  adopt: Adopt
  lifecycle: Lifecycle
  log: Logger
  observer: BrokerObserver
}

/** Subscribes to grant notices and secret rotations; returns the unsubscribe. */
export function subscribeToNotices ({ table, shared, secrets, flights, adopt, lifecycle, log, observer }: NoticeDeps): () => void {
  const unsubscribeGrants = shared.store.onGrant((key, fence) => {
    const state = table.grantByKey(key)
    if (state === undefined) return
    state.wakeWaiters()
    // A notice of a write this replica made (or older) has nothing new to read.
    if (fence !== undefined && fence <= state.fence) return
    lifecycle.track(shared.read(key).then(stored => { if (stored !== undefined) adopt(state, stored.grant, stored.fence) }))
  })

  const unsubscribeRotation = secrets.onRotation((path, version) => {
    for (const entry of table.entries()) {
      if (entry.config.secret !== path) continue
      observer.rotated?.(entry.config.id)
      log.info({ credentialId: entry.config.id, secretVersion: version }, 'secret rotated')
      if (entry.mechanism !== 'token') continue
      entry.grant.allowRetryNow()
      lifecycle.track(flights.refresh(entry.grant, { reason: 'rotation', secretVersion: version }).catch(() => { /* recorded by the single flight */ }))
    }
  })

  return () => { unsubscribeGrants(); unsubscribeRotation() }
}
