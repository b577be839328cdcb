/**
 * Exactly one provider call for a grant key: the breaker's permission, the secret, the refresh-or-mint
 * choice, one re-read of the secret when the provider rejects it, and the breaker's verdict. It never
 * touches the store; cluster-refresh.ts writes what it returns.
 */
import type { Logger } from 'pino'
import { CircuitOpenError, ProviderError } from '../errors.js'
import type { Grant, ProviderContext, SecretData } from '../providers/types.js'
import type { SecretValue } from '../secrets/types.js'
import type { Clock } from '../time.js'
import type { BreakerRegistry } from './circuit-breaker.js'
import type { GrantState } from './grant-state.js'
import type { Lifecycle } from './lifecycle.js'
import { servingMarginMs, type RefreshIntent } from './refresh-policy.js'
import { rollbackSecret, type SecretReader } from './secret-reader.js'
import type { BrokerObserver, BrokerSecrets } from './types.js'

export interface Minted {
  grant: Grant
  /** performance.now() when the mint began, for the refresh duration metric. */
  startedAt: number
}

export interface Minter {
  /**
   * A new grant for `state`, from the provider. `previous` is the newest grant known (refreshed rather than
   * minted where the adapter can); `boundMs` is how long the call may take in all; `lost` aborts it when the
   * lease it runs under is lost (another replica refreshes now).
   */
  mint: (state: GrantState, intent: RefreshIntent, previous: Grant | undefined, boundMs: number, lost?: AbortSignal) => Promise<Minted>
  /** The context an adapter call gets. */
  context: (state: { credential: GrantState['credential'] }, signal?: AbortSignal) => ProviderContext
}

export interface MinterDeps {
  readSecret: SecretReader
  secrets: BrokerSecrets
  breakers: BreakerRegistry
  lifecycle: Lifecycle
  clock: Clock
  log: Logger
  observer: BrokerObserver
}

export function createMinter ({ readSecret, secrets, breakers, lifecycle, clock, log, observer }: MinterDeps): Minter {
  function context (state: { credential: GrantState['credential'] }, signal: AbortSignal = lifecycle.signal): ProviderContext {
    return { credential: state.credential, now: clock.now, log: log.child({ credentialId: state.credential.id }), signal }
  }

  /** The provider call itself: the adapter's refresh path where it has one and it can help, else a mint. */
  async function callProvider (state: GrantState, intent: RefreshIntent, secret: SecretData, previous: Grant | undefined, signal: AbortSignal): Promise<Grant> {
    const ctx = context(state, signal)
    // The refresh path presents the current token: useless when the provider has just rejected it.
    const refreshable = previous !== undefined && previous.expiresAt > clock.now() + 1000 && intent.reason !== 'rejected'
    if (state.adapter.refresh !== undefined && refreshable) {
      try {
        return await state.adapter.refresh(previous, secret, ctx)
      } catch (err) {
        // A refresh endpoint does not use the client secret, so its refusals say nothing about it: only
        // a transient failure is worth retrying as is; anything else falls back to minting.
        if (!(err instanceof ProviderError) || err.kind === 'transient') throw err
        ctx.log.info({ status: err.status }, 'refresh refused; minting instead')
      }
    }
    return await state.adapter.mint(secret, ctx)
  }

  /**
   * A signal that aborts at shutdown or after `boundMs`. (A controller per mint whose timer and listener go
   * when the mint ends: AbortSignal.timeout/any would keep one timer and one listener per mint alive for
   * the whole bound, 10,000 of them at a cold start.)
   */
  function boundedSignal (boundMs: number, lost: AbortSignal | undefined): { signal: AbortSignal, release: () => void } {
    const bound = new AbortController()
    const sources = [lifecycle.signal, lost].filter((signal): signal is AbortSignal => signal !== undefined)
    const onAbort = (): void => { bound.abort(lost?.aborted === true ? lost.reason : lifecycle.signal.reason) }
    // A listener added to an already aborted signal never fires: a mint that starts during shutdown (or
    // after its lease was lost) is aborted at once rather than outliving the process.
    if (sources.some(signal => signal.aborted)) onAbort()
    else for (const signal of sources) signal.addEventListener('abort', onAbort, { once: true })
    const timer = setTimeout(() => { bound.abort(new DOMException('the refresh took longer than any refresh may', 'TimeoutError')) }, boundMs)
    timer.unref()
    return {
      signal: bound.signal,
      release: () => { clearTimeout(timer); for (const signal of sources) signal.removeEventListener('abort', onAbort) }
    }
  }

  /**
   * Secret rollover: the provider rejected the current version and no newer one exists; mint with the one
   * before it when rollbackSecret allows (a young version), else rethrow the rejection.
   */
  async function rollBack (state: GrantState, current: SecretValue, rejection: unknown, signal: AbortSignal): Promise<{ grant: Grant, secret: SecretValue }> {
    const previous = await rollbackSecret(secrets, state.credential, current, clock.now())
    if (previous === undefined) throw rejection
    try {
      return { grant: await state.adapter.mint(previous.data, context(state, signal)), secret: previous }
    } catch (err) {
      // The previous version is refused too: the current version's rejection is the news.
      if (err instanceof ProviderError && err.kind === 'permanent') throw rejection
      throw err
    }
  }

  async function mint (state: GrantState, intent: RefreshIntent, previous: Grant | undefined, boundMs: number, lost?: AbortSignal): Promise<Minted> {
    const { credential } = state
    const breaker = breakers.forCredential(credential)
    const gate = breaker.check()
    if (!gate.allowed) throw new CircuitOpenError(gate.retryAfterMs)
    const startedAt = performance.now()
    let secret: SecretValue
    try {
      secret = await readSecret(credential, false)
    } catch (err) {
      breaker.abandon() // not the provider's fault: give a half-open probe slot back
      throw err
    }
    const bounded = boundedSignal(boundMs, lost)
    let grant: Grant
    let rolledBackFrom: number | undefined
    try {
      try {
        grant = await callProvider(state, intent, secret.data, previous, bounded.signal)
      } catch (err) {
        // A user session is refused for its own reasons; only a mint with the client secret is retried with a newer one.
        if (!(err instanceof ProviderError) || err.kind !== 'permanent' || state.variant.kind === 'user') throw err
        // Wrong credentials: the secret may have been rotated in Vault since we read it. Re-read once.
        const fresh = await readSecret(credential, true).catch(() => secret)
        if (fresh.version !== secret.version) {
          log.info({ credentialId: credential.id, secretVersion: fresh.version }, 'retrying with a newer secret version')
          secret = fresh
          grant = await state.adapter.mint(secret.data, context(state, bounded.signal))
        } else {
          const rolled = await rollBack(state, secret, err, bounded.signal)
          grant = rolled.grant
          rolledBackFrom = secret.version
          secret = rolled.secret
        }
      }
      // A grant that is (nearly) expired on arrival, from a clock-skewed provider or a very slow answer,
      // would be refreshed again at once, and again: treat it as the bad answer it is, with backoff.
      if (grant.expiresAt <= clock.now() + servingMarginMs) {
        throw new ProviderError('bad-response', `${credential.provider}: the provider answered a token that expires at once`)
      }
    } catch (err) {
      // A call aborted because our lease was lost says nothing about the provider.
      if (lost?.aborted === true) breaker.abandon()
      else if (err instanceof ProviderError && err.kind !== 'permanent') breaker.failure(err.retryAfterMs)
      else if (err instanceof ProviderError) breaker.success() // it answered: the provider is up
      else breaker.abandon()
      const result = err instanceof ProviderError && err.kind === 'permanent' ? 'permanent_error' : 'transient_error'
      observer.refreshed?.(credential.provider, credential.id, result, intent.reason, (performance.now() - startedAt) / 1000)
      throw err
    } finally {
      bounded.release()
    }
    breaker.success()
    grant.secretVersion = secret.version
    if (rolledBackFrom !== undefined) {
      grant.secretRolledBackFrom = rolledBackFrom
      observer.rolledBack?.(credential.id)
      log.warn({ credentialId: credential.id, secretVersion: secret.version, rejectedVersion: rolledBackFrom }, 'the provider rejected the current secret version; minted with the previous one')
    }
    // A provider that answers a refresh without a refresh token keeps the old one valid: never replace it with nothing.
    if (grant.refreshToken === undefined && previous?.refreshToken !== undefined) grant.refreshToken = previous.refreshToken
    return { grant, startedAt }
  }

  return { mint, context }
}
