/**
 * When a grant is refreshed, and whether a grant serves a caller: pure functions of a grant, a policy and
 * the time. Every judgement of a min_ttl and every "is a refresh needed" is made here.
 */
import type { CredentialConfig } from '../config.js'
import { ProviderError } from '../errors.js'
import { backoffDelayMs, type BackoffPolicy } from '../time.js'
import type { Grant } from '../providers/types.js'
import { sameToken, unitHash } from './grant-identity.js'
import type { RefreshReason } from './types.js'

/**
 * A grant is served only with at least min_ttl plus this left, so the `expires_in` a caller reads
 * (whole seconds, rounded down, computed a moment later) is never below the min_ttl it asked for.
 */
export const servingMarginMs = 1000

/** Floor of the time between two refreshes of one grant, whatever its lifetime. */
const minRefreshIntervalMs = 1000
/** The share of a grant's lifetime before which the pacer never moves its refresh (see earliestRefreshAt). */
const pacingFloorRatio = 0.4

/** Shortest a grant must live before an on-demand refresh may replace it: stops a min_ttl near the lifetime from causing a mint per request. */
const minGrantAgeFraction = 0.1
const minGrantAgeCapMs = 30_000
/** Longest interval between two refreshes forced by callers' rejection reports (shorter for short lifetimes). */
const rejectionRefreshIntervalCapMs = 30_000

/** The min_ttl a caller gets when it names none: this many seconds, or less for short-lived tokens (below). */
const defaultMinTtlCapSeconds = 60
/** ...at most this share of the lifetime, so a caller that says nothing is always served, even by 5-second tokens. */
const defaultMinTtlLifetimeShare = 0.25
/** A min_ttl must leave this share of the lifetime: one closer to the whole lifetime could only be met by minting on almost every request. */
const maxMinTtlLifetimeShare = 0.9

/** Why a refresh runs, and what would make it unnecessary. */
export interface RefreshIntent {
  reason: RefreshReason
  /** on_demand: the caller needs a grant valid until at least this time. */
  neededUntil?: number
  rejectedToken?: string
  secretVersion?: number
  requestedAt?: number
}

/** Intents with a caller waiting on the answer: bounded by the wait timeout, not by the lease. */
export function isCallerWaiting (intent: RefreshIntent): boolean {
  return intent.reason === 'on_demand' || intent.reason === 'rejected'
}

const lifetimeOf = (grant: Grant): number => Math.max(0, grant.expiresAt - grant.obtainedAt)

/**
 * When a grant should be refreshed: min(obtainedAt + ratio × lifetime, expiresAt − margin), moved by a
 * jitter of ±jitter_ratio × lifetime, then clamped into [50 %, 95 %] of the lifetime. The clamp matters
 * for short lifetimes: a 5-minute margin on a 60-second token would put the refresh before the grant was
 * even obtained, and the engine would refresh in a loop. The jitter is a hash of the grant, not a random
 * draw, so all replicas agree on the moment and only one of them mints.
 */
export function plannedRefreshAt (grant: Grant, policy: CredentialConfig['refresh'], key: string): number {
  const lifetime = lifetimeOf(grant)
  const byRatio = grant.obtainedAt + policy.ratio * lifetime
  const byMargin = grant.expiresAt - policy.margin_seconds * 1000
  const jitter = (unitHash(`${key}:${grant.obtainedAt}`) * 2 - 1) * policy.jitter_ratio * lifetime
  const at = Math.min(byRatio, byMargin) + jitter
  const clamped = Math.min(Math.max(at, grant.obtainedAt + 0.5 * lifetime), grant.obtainedAt + 0.95 * lifetime)
  // However short the lifetime, never more than one refresh per minRefreshIntervalMs.
  return Math.max(clamped, grant.obtainedAt + minRefreshIntervalMs)
}

/**
 * The earliest moment the pacer may move a proactive refresh to: 40 % of the grant's lifetime, a little
 * below plannedRefreshAt's own lower clamp (50 %). The extra room lets the waves of different lifetimes
 * that meet after a cold start spread out fully (bench/README.md, scale); a grant refreshed that early
 * still had most of its life left, so it costs a mint, never a token.
 */
export function earliestRefreshAt (grant: Grant): number {
  return grant.obtainedAt + Math.max(pacingFloorRatio * lifetimeOf(grant), minRefreshIntervalMs)
}

/**
 * When a grant's proactive refresh is due: the moment stored with it (Grant.refreshAt, chosen by the
 * replica that minted it) when that lies in the allowed window, else its planned time.
 */
export function dueAt (grant: Grant, policy: CredentialConfig['refresh'], key: string): number {
  const planned = plannedRefreshAt(grant, policy, key)
  const chosen = grant.refreshAt
  return chosen !== undefined && chosen <= planned && chosen >= earliestRefreshAt(grant) ? chosen : planned
}

/** Whether `grant` (the newest known, if any) leaves the refresh that `intent` asks for with nothing to do. */
export function needsRefresh (grant: Grant | undefined, intent: RefreshIntent, now: number, due: (grant: Grant) => number): boolean {
  if (grant === undefined || grant.expiresAt <= now) return true
  switch (intent.reason) {
    case 'on_demand': {
      if (grant.expiresAt >= (intent.neededUntil ?? now)) return false
      // A grant this young is as good as a new one: minting again cannot give more life.
      return now - grant.obtainedAt >= Math.min(minGrantAgeCapMs, minGrantAgeFraction * lifetimeOf(grant))
    }
    case 'proactive': return now >= due(grant)
    case 'rejected': return intent.rejectedToken !== undefined && sameToken(grant.accessToken, intent.rejectedToken)
    case 'rotation': return (grant.secretVersion ?? 0) < (intent.secretVersion ?? 0)
    case 'forced': return grant.obtainedAt < (intent.requestedAt ?? now)
  }
}

/** The moment until which a grant must stay valid to serve a caller asking for `minTtlSeconds`. */
export function neededUntil (minTtlSeconds: number, now: number): number {
  return now + minTtlSeconds * 1000 + servingMarginMs
}

/** Whether a grant may be handed to a caller asking for `minTtlSeconds` now. */
export function serves (grant: Grant, minTtlSeconds: number, now: number): boolean {
  return grant.expiresAt >= neededUntil(minTtlSeconds, now)
}

/** Whether grants that live `lifetimeMs` can ever serve `minTtlSeconds` without a mint on almost every request. */
export function minTtlFits (minTtlSeconds: number, lifetimeMs: number): boolean {
  return minTtlSeconds * 1000 + servingMarginMs <= maxMinTtlLifetimeShare * lifetimeMs
}

/** The min_ttl of a caller that names none: min(60 s, a quarter of the lifetime), whole seconds. */
export function defaultMinTtlSeconds (lifetimeSeconds: number | undefined): number {
  if (lifetimeSeconds === undefined) return defaultMinTtlCapSeconds
  return Math.min(defaultMinTtlCapSeconds, Math.floor(defaultMinTtlLifetimeShare * lifetimeSeconds))
}

/** The least time between two refreshes forced by rejection reports, for grants of `lifetimeMs`. */
export function rejectionRefreshIntervalMs (lifetimeMs: number): number {
  return Math.min(rejectionRefreshIntervalCapMs, minGrantAgeFraction * lifetimeMs)
}

/**
 * A provider that rejects our secret is asked again after 15 s, doubling to 10 min: a rejection that was a
 * blip on the provider's side heals on its own, a wrong secret costs one call per probe. A rotation in Vault
 * or an operator's forced refresh tries at once.
 */
const permanentProbe: BackoffPolicy = { baseMs: 15_000, capMs: 10 * 60_000, jitterRatio: 0.2 }

/** The pause of a grant key after a failure that was not the provider's (Vault unreachable): short, like the breaker's. */
export const defaultLocalRetry: BackoffPolicy = { baseMs: 500, capMs: 1500, jitterRatio: 0.25 }

/**
 * How long a grant key waits on its own after a failed refresh, before the endpoint's breaker has its say:
 * a rejected secret's probe interval; nothing for a transient provider failure (the breaker, shared by
 * every credential of the endpoint, is the one schedule); a short pause for any other failure.
 */
export function retryDelayAfter (err: unknown, failure: { consecutive: number, permanentRejections: number }, local: BackoffPolicy, random: () => number): number {
  if (err instanceof ProviderError) {
    return err.kind === 'permanent' ? backoffDelayMs(failure.permanentRejections, undefined, permanentProbe, random) : 0
  }
  return backoffDelayMs(failure.consecutive, undefined, local, random)
}
