/** What operators and callers see of the broker: each credential's state, and the replica's health. Reads only. */
import type { CredentialEntry } from './grant-state.js'
import type { Lifecycle } from './lifecycle.js'
import type { Scheduler } from './scheduler.js'
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

export async function brokerHealth (deps: Pick<BrokerDeps, 'store' | 'secrets' | 'secretsKind'>, lifecycle: Lifecycle, started: boolean): Promise<BrokerHealth> {
  const [storeHealth, secretHealth] = [await deps.store.health(), deps.secrets.health()]
  const store = { kind: deps.store.kind, state: storeHealth.state, detail: storeHealth.state === 'down' ? storeHealth.detail : undefined }
  const secrets = { kind: deps.secretsKind, state: secretHealth.state, detail: secretHealth.detail, authenticated: secretHealth.authenticated }
  let state: BrokerHealth['state'] = 'ready'
  if (!started || lifecycle.closing) state = 'not_ready'
  else if (storeHealth.state === 'down' || secretHealth.state !== 'ok') state = 'degraded'
  return { state, store, secrets }
}
