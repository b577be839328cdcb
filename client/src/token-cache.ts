/**
 * The client's token cache: one token per credential in memory, single-flight requests to the broker,
 * and single-flight rejection reports. The broker already deduplicates across callers; doing it here as
 * well means 100 concurrent calls in one process cost the broker one request, not 100.
 */

/** A token as the client holds it. `expiresAtMs` is on this host's clock (see fromAnswer in client.ts). */
export interface CachedToken {
  readonly accessToken: string
  readonly tokenType: string
  readonly expiresAtMs: number
  /** `expires_in` of the broker's answer this token came in. */
  readonly answeredExpiresIn: number
  readonly scope: string | undefined
}

/**
 * A cached token is served only while it has `minTtl` plus this many seconds left. The margin covers the
 * time between getToken returning and the provider receiving the request that carries the token (the
 * caller's own work, connection set-up, a slow upstream), so a token handed out with `minTtl` seconds of
 * life is not already shorter-lived when it is used.
 */
export const cacheMarginSeconds = 5

/** How many rejected tokens per credential are remembered, so that a late answer cannot bring one back. */
const rememberedRejections = 16

export interface TokenCacheDeps {
  /** One broker request for a token with at least `minTtl` seconds left. */
  request: (credentialId: string, minTtl: number) => Promise<CachedToken>
  /** One rejection report; answers the token that replaces `rejected`. */
  report: (credentialId: string, rejected: string) => Promise<CachedToken>
  now: () => number
}

export interface TokenCache {
  /** A token with at least `minTtl` (+ margin) left from the cache, else from one shared broker request. */
  get: (credentialId: string, minTtl: number) => Promise<CachedToken>
  /** The token to retry with after `rejected` was refused upstream: one shared report per rejected token. */
  replaceRejected: (credentialId: string, rejected: string, minTtl: number) => Promise<CachedToken>
}

export function createTokenCache (deps: TokenCacheDeps): TokenCache {
  const held = new Map<string, CachedToken>()
  /** In-flight token requests by credential and minTtl: a call joins one for the same minTtl only. */
  const requests = new Map<string, Promise<CachedToken>>()
  /** In-flight rejection reports by credential and rejected token. */
  const reports = new Map<string, Promise<CachedToken>>()
  /** A report in flight per credential: token requests wait for it rather than fetch the rejected token again. */
  const reporting = new Map<string, Promise<CachedToken>>()
  const rejected = new Map<string, Set<string>>()

  function usable (token: CachedToken | undefined, minTtl: number): token is CachedToken {
    return token !== undefined && token.expiresAtMs - deps.now() >= (minTtl + cacheMarginSeconds) * 1000
  }

  function wasRejected (credentialId: string, accessToken: string): boolean {
    return rejected.get(credentialId)?.has(accessToken) === true
  }

  function remember (credentialId: string, token: CachedToken, replacing: boolean): void {
    if (wasRejected(credentialId, token.accessToken)) return
    const current = held.get(credentialId)
    // Answers may arrive out of order: keep the longer-lived token, unless this one replaces a rejected one.
    if (replacing || current === undefined || wasRejected(credentialId, current.accessToken) || token.expiresAtMs >= current.expiresAtMs) {
      held.set(credentialId, token)
    }
  }

  function markRejected (credentialId: string, accessToken: string): void {
    let tokens = rejected.get(credentialId)
    if (tokens === undefined) {
      tokens = new Set()
      rejected.set(credentialId, tokens)
    }
    tokens.add(accessToken)
    if (tokens.size > rememberedRejections) tokens.delete(tokens.values().next().value as string)
    if (held.get(credentialId)?.accessToken === accessToken) held.delete(credentialId)
  }

  async function get (credentialId: string, minTtl: number): Promise<CachedToken> {
    const cached = held.get(credentialId)
    if (usable(cached, minTtl)) return cached
    const pendingReport = reporting.get(credentialId)
    if (pendingReport !== undefined) {
      const replacement = await pendingReport.catch(() => undefined)
      if (usable(replacement, minTtl)) return replacement
    }
    const key = `${credentialId}\u0000${minTtl}`
    let flight = requests.get(key)
    if (flight === undefined) {
      flight = deps.request(credentialId, minTtl).then(token => {
        remember(credentialId, token, false)
        return token
      }).finally(() => { requests.delete(key) })
      requests.set(key, flight)
    }
    return await flight
  }

  async function replaceRejected (credentialId: string, rejectedToken: string, minTtl: number): Promise<CachedToken> {
    markRejected(credentialId, rejectedToken)
    // Another call already replaced it (its report answered, or the cache moved on): retry with that.
    const current = held.get(credentialId)
    if (usable(current, minTtl)) return current
    const key = `${credentialId}\u0000${rejectedToken}`
    let flight = reports.get(key)
    if (flight === undefined) {
      const started: Promise<CachedToken> = deps.report(credentialId, rejectedToken).then(token => {
        remember(credentialId, token, true)
        return token
      }).finally(() => {
        reports.delete(key)
        if (reporting.get(credentialId) === started) reporting.delete(credentialId)
      })
      flight = started
      reports.set(key, flight)
      reporting.set(credentialId, flight)
    }
    return await flight
  }

  return { get, replaceRejected }
}
