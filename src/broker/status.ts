/** What operators and callers see of the broker: each credential's state, and the replica's health. Reads only. */
import type { CredentialEntry } from './grant-state.js'
import type { Lifecycle } from './lifecycle.js'
import { decideReadiness, needsStoreLook, type ReadinessFacts } from './readiness.js'
import type { Scheduler } from './scheduler.js'
import type { SharedStore } from './shared-store.js'
import type { BrokerDeps, BrokerHealth, CredentialStatus } from './types.js'

export function credentialStatus (entry: CredentialEntry, scheduler: Pick<Scheduler, 'nextRefreshAt'>, counts: { scopedGrants: number, userSessionsCached: number }, now: number): CredentialStatus {
  const { config } = entry
  const base = { id: config.id, provider: config.provider, environment: config.environment }
  if (entry.mechanism === 'signing') {
    return { ...base, state: 'static', secretVersion: entry.secretVersion, consecutiveFailures: 0 }
  }
  const state = entry.grant
  const grant = state.held
  let shown: CredentialStatus['state']
  if (state.inflight !== undefined) shown = 'refreshing'
  else if (grant === undefined || grant.expiresAt <= now) shown = state.consecutiveFailures > 0 ? 'failing' : 'unknown'
  else if (state.consecutiveFailures > 0) shown = now >= state.plannedAt ? 'stale' : 'failing'
  else shown = 'fresh'
  return {
    ...base,
    state: shown,
    expiresAt: grant?.expiresAt,
    obtainedAt: grant?.obtainedAt,
    nextRefreshAt: scheduler.nextRefreshAt(state),
    refreshDueAt: grant === undefined ? undefined : state.plannedAt,
    secretVersion: state.secretVersion,
    secretRolledBack: grant?.secretRolledBackFrom !== undefined,
    consecutiveFailures: state.consecutiveFailures,
    ...counts,
    lastError: state.lastError()
  }
}

/** What the replica holds, for readiness (broker.ts reads them from its table, secrets and store). */
export interface Holdings {
  secretHeld: () => boolean
  grantHeld: () => boolean
  /** Whether the store has an unexpired default grant; false when it cannot be reached. */
  grantStored: () => Promise<boolean>
}

export async function brokerHealth (deps: Pick<BrokerDeps, 'store' | 'secrets' | 'secretsKind' | 'credentials'>, lifecycle: Lifecycle, started: boolean, holdings: Holdings): Promise<BrokerHealth> {
  const [storeHealth, secretHealth] = [await deps.store.health(), deps.secrets.health()]
  const store = { kind: deps.store.kind, state: storeHealth.state, detail: storeHealth.state === 'down' ? storeHealth.detail : undefined }
  const secrets = { kind: deps.secretsKind, state: secretHealth.state, detail: secretHealth.detail, authenticated: secretHealth.authenticated }
  const facts: ReadinessFacts = {
    started,
    closing: lifecycle.closing,
    credentials: deps.credentials.length,
    store,
    secrets,
    secretHeld: holdings.secretHeld(),
    grantHeld: holdings.grantHeld()
  }
  // Only a replica that holds nothing and cannot read a secret looks in the store: then it is the one
  // thing left that could serve, and the look is a GET per credential at most, during an outage only.
  if (started && store.state === 'up' && needsStoreLook(facts)) facts.grantStored = await holdings.grantStored()
  const { state, reason } = decideReadiness(facts)
  return { state, reason, store, secrets }
}

/** Reads per round of anyGrantStored: one round trip each, and a probe's answer within its timeout at 10,000 credentials. */
const storeLookBatch = 200

/** Whether any of the grant `keys` has an unexpired grant in the store, stopping after the first batch that finds one. */
export async function anyGrantStored (keys: readonly string[], shared: SharedStore, now: () => number): Promise<boolean> {
  for (let start = 0; start < keys.length; start += storeLookBatch) {
    const found = await Promise.all(keys.slice(start, start + storeLookBatch).map(async key => await shared.read(key)))
    if (found.some(stored => stored !== undefined && stored.grant.expiresAt > now())) return true
  }
  return false
}
