import { readFile } from 'node:fs/promises'
import type { SecretsLog } from './log.js'
import type { VaultConfig } from '../config.js'
import type { VaultAuthGrant, VaultClient } from './vault-client.js'
import { SecretError } from '../errors.js'
import { backoffDelayMs, systemTimers, type Timers } from '../time.js'

export interface VaultAuthStatus {
  /** A token is held and, as far as we know, still valid. */
  authenticated: boolean
  /** Why the token is missing or at risk (operator-facing, never a secret). */
  problem: string | undefined
  /** When the held token expires (epoch ms); undefined for a token without TTL. */
  expiresAt: number | undefined
}

export interface VaultAuth {
  /** Obtains a token (login, or validation of VAULT_TOKEN) and schedules its renewal. */
  login: () => Promise<void>
  /** Resolves once a usable token is held, logging in when there is none. Concurrent callers share one login. */
  ensure: () => Promise<void>
  /**
   * Called after a 403: tells "our token died" from "this token may not read that path". Returns true
   * when a new token was obtained (the caller retries once), false when the token is fine.
   */
  recover: () => Promise<boolean>
  status: () => VaultAuthStatus
  close: () => void
}

export interface VaultAuthDeps {
  client: VaultClient
  config: VaultConfig
  log: SecretsLog
  /** Epoch milliseconds. */
  now?: () => number
  timers?: Timers
  /** [0, 1); spreads renewals of many replicas apart. */
  random?: () => number
  /**
   * Reads a token file: the Kubernetes service account token (projected tokens rotate, so it is read on
   * every login) and VAULT_TOKEN_FILE (a Vault Agent sink, read again whenever its token stops working).
   */
  readTokenFile?: (path: string) => Promise<string>
  /** First delay after a failed renewal or login; doubles up to retryMaxMs. */
  retryBaseMs?: number
  retryMaxMs?: number
}

/** Renew at about 2/3 of the TTL: late enough to be cheap, early enough to survive a failed attempt or two. */
const renewFraction = 2 / 3
/** ±10 % of the delay, so replicas started together do not renew (or log in) in lockstep. */
const jitterFraction = 0.1

/**
 * Vault authentication for one process: token, AppRole or Kubernetes. Renews the token with renew-self
 * at about 2/3 of its TTL; logs in again when renewal fails, the token is not renewable, or Vault caps
 * the renewal below what we asked for (the max TTL is near). A static VAULT_TOKEN cannot be re-acquired:
 * when it expires or is revoked, `status()` says so and reads fail with `denied` until a restart with a
 * new token. A token from VAULT_TOKEN_FILE can: "logging in" re-reads the file (a Vault Agent sink that
 * rewrites it), whenever Vault refuses the token, renewal fails or the token nears its end.
 */
export function createVaultAuth (deps: VaultAuthDeps): VaultAuth {
  const { client, config, log } = deps
  const now = deps.now ?? Date.now
  const timers = deps.timers ?? systemTimers
  const random = deps.random ?? Math.random
  const readTokenFile = deps.readTokenFile ?? (async (path: string) => await readFile(path, 'utf8'))
  const retryBaseMs = deps.retryBaseMs ?? 1000
  const retryMaxMs = deps.retryMaxMs ?? 30_000
  const tokenFile = config.auth === 'token' ? config.tokenFile : undefined
  /** Whether a new token can be had without a restart: every method but a static VAULT_TOKEN. */
  const reacquirable = config.auth !== 'token' || tokenFile !== undefined

  let authenticated = false
  let expiresAt: number | undefined
  /** The TTL we ask for on renew-self: the lease the login (or token creation) gave. */
  let requestedTtlSeconds = 0
  let problem: string | undefined
  /** A static token that Vault refused or that expired: nothing we can do until restart. */
  let terminal: SecretError | undefined
  let timer: unknown
  let retryAttempt = 0
  /**
   * While a failed login waits for its scheduled retry: when that retry is due and the error it failed
   * with. On-demand callers (secret reads, probes) get that error at once instead of a login of their own,
   * so the backoff holds however many reads arrive (otherwise every read would log in, and log, again).
   */
  let pendingRetry: { at: number, error: SecretError } | undefined
  let inflightLogin: Promise<void> | undefined
  let inflightRecover: Promise<boolean> | undefined
  let closed = false

  function schedule (ms: number, task: () => Promise<void>): void {
    if (timer !== undefined) timers.clearTimer(timer)
    if (closed) return
    timer = timers.setTimer(() => {
      timer = undefined
      // Background work reports through logs and status(), never as an unhandled rejection.
      task().catch((err: unknown) => { log.error({ err }, 'vault auth background task failed') })
    }, Math.max(0, ms))
  }

  function jittered (ms: number): number {
    return ms * (1 + (random() * 2 - 1) * jitterFraction)
  }

  function retryDelay (): number {
    retryAttempt += 1
    return backoffDelayMs(retryAttempt, undefined, { baseMs: retryBaseMs, capMs: retryMaxMs, jitterRatio: 2 * jitterFraction }, random)
  }

  function tokenExpired (): boolean {
    return expiresAt !== undefined && now() >= expiresAt
  }

  function adopt (grant: VaultAuthGrant): void {
    client.setToken(grant.clientToken)
    authenticated = true
    terminal = undefined
    problem = undefined
    retryAttempt = 0
    pendingRetry = undefined
    requestedTtlSeconds = grant.leaseDurationSeconds
    expiresAt = grant.leaseDurationSeconds > 0 ? now() + grant.leaseDurationSeconds * 1000 : undefined
    planNext(grant.leaseDurationSeconds, grant.renewable)
  }

  /** After a fresh token: renew it (renewable), or log in again at the same point (not renewable). */
  function planNext (leaseSeconds: number, renewable: boolean): void {
    if (leaseSeconds <= 0) return // no TTL (e.g. a root token): nothing to renew
    const delay = jittered(leaseSeconds * 1000 * renewFraction)
    if (renewable) schedule(delay, renew)
    else if (!reacquirable) schedule(leaseSeconds * 1000, async () => { expire() })
    else schedule(delay, relogin)
  }

  function expire (): void {
    if (!tokenExpired()) return
    authenticated = false
    client.setToken(undefined)
    if (!reacquirable) {
      problem = 'VAULT_TOKEN expired (it is not renewable or could not be renewed); restart with a new token'
      terminal = new SecretError('denied', problem)
      log.error({ method: config.auth }, 'vault token expired')
    } else {
      problem = 'Vault token expired and logging in again has not succeeded yet'
    }
  }

  /** VAULT_TOKEN, or what VAULT_TOKEN_FILE holds now. */
  async function staticToken (): Promise<string> {
    if (tokenFile === undefined) {
      if (config.token === undefined) throw new SecretError('invalid', 'VAULT_AUTH=token needs VAULT_TOKEN')
      return config.token
    }
    let token: string
    try {
      token = (await readTokenFile(tokenFile)).trim()
    } catch (err) {
      throw new SecretError('unavailable', `cannot read VAULT_TOKEN_FILE ${tokenFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    if (token === '') throw new SecretError('unavailable', `VAULT_TOKEN_FILE ${tokenFile} is empty (is its Vault Agent running?)`)
    return token
  }

  async function loginOnce (): Promise<void> {
    if (config.auth === 'token') {
      client.setToken(await staticToken())
      let info
      try {
        info = await client.lookupSelf()
      } catch (err) {
        if (err instanceof SecretError && err.kind === 'denied') {
          client.setToken(undefined)
          authenticated = false
          if (tokenFile !== undefined) {
            // The agent may not have rewritten the file yet: keep re-reading it (login() retries with backoff).
            problem = `Vault refused the token in VAULT_TOKEN_FILE ${tokenFile}; re-reading the file until its Vault Agent writes a valid one`
            throw new SecretError('denied', problem)
          }
          problem = 'Vault refused VAULT_TOKEN (invalid, expired or revoked)'
          terminal = new SecretError('denied', problem)
          throw terminal
        }
        throw err
      }
      authenticated = true
      terminal = undefined
      problem = undefined
      retryAttempt = 0
      pendingRetry = undefined
      requestedTtlSeconds = info.creationTtlSeconds > 0 ? info.creationTtlSeconds : info.ttlSeconds
      expiresAt = info.ttlSeconds > 0 ? now() + info.ttlSeconds * 1000 : undefined
      log.info({ method: 'token', tokenFile, ttlSeconds: info.ttlSeconds, renewable: info.renewable }, 'vault token accepted')
      planNext(info.ttlSeconds, info.renewable)
      return
    }
    let grant: VaultAuthGrant
    if (config.auth === 'approle') {
      if (config.roleId === undefined || config.secretId === undefined) throw new SecretError('invalid', 'VAULT_AUTH=approle needs VAULT_ROLE_ID and VAULT_SECRET_ID')
      grant = await client.login(config.approleMount, { role_id: config.roleId, secret_id: config.secretId })
    } else {
      if (config.k8sRole === undefined) throw new SecretError('invalid', 'VAULT_AUTH=kubernetes needs VAULT_K8S_ROLE')
      let jwt: string
      try {
        jwt = (await readTokenFile(config.k8sTokenPath)).trim()
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'error'
        throw new SecretError('unavailable', `cannot read the Kubernetes service account token at ${config.k8sTokenPath} (${code})`)
      }
      if (jwt === '') throw new SecretError('invalid', `the Kubernetes service account token at ${config.k8sTokenPath} is empty`)
      grant = await client.login(config.k8sMount, { role: config.k8sRole, jwt })
    }
    adopt(grant)
    log.info({ method: config.auth, leaseSeconds: grant.leaseDurationSeconds, renewable: grant.renewable }, 'vault login succeeded')
  }

  /**
   * One login at a time (concurrent callers share it); on failure, keep trying in the background (except
   * for a refused static token). Until that background retry is due, callers fail fast with its error.
   */
  async function login (): Promise<void> {
    if (closed) throw new SecretError('unavailable', 'Vault auth is closed')
    if (inflightLogin !== undefined) return await inflightLogin
    if (pendingRetry !== undefined && now() < pendingRetry.at) throw pendingRetry.error
    return await attemptLogin()
  }

  async function attemptLogin (): Promise<void> {
    if (inflightLogin !== undefined) return await inflightLogin
    pendingRetry = undefined
    inflightLogin = (async () => {
      try {
        await loginOnce()
      } catch (err) {
        const error = err instanceof SecretError ? err : new SecretError('unavailable', 'Vault login failed')
        if (terminal === undefined) {
          problem = tokenFile !== undefined && error.kind === 'denied' && problem !== undefined
            ? problem
            : authenticated && !tokenExpired()
            ? `Vault token could not be renewed and logging in again is failing (${error.kind})`
            : `Vault login failing (${error.kind})`
          const delay = retryDelay()
          log.warn({ method: config.auth, err: error, retryInMs: Math.round(delay) }, 'vault login failed')
          pendingRetry = { at: now() + delay, error }
          schedule(delay, relogin)
        } else {
          log.error({ method: config.auth, err: error }, 'vault token refused')
        }
        throw error
      } finally {
        inflightLogin = undefined
      }
    })()
    return await inflightLogin
  }

  /** The scheduled attempt (retry, re-login before the max TTL): it is the backoff, so it does not wait for it. */
  async function relogin (): Promise<void> {
    if (closed) return
    try {
      await attemptLogin()
    } catch {
      // login() logged it and scheduled the next attempt.
    }
  }

  async function renew (): Promise<void> {
    if (closed) return
    const asked = requestedTtlSeconds
    try {
      const grant = await client.renewSelf(asked > 0 ? asked : undefined)
      retryAttempt = 0
      problem = undefined
      expiresAt = grant.leaseDurationSeconds > 0 ? now() + grant.leaseDurationSeconds * 1000 : expiresAt
      // Vault caps a renewal at the token's max TTL: a shorter lease than asked means the end is near.
      const capped = asked > 0 && grant.leaseDurationSeconds < asked
      log.debug({ method: config.auth, leaseSeconds: grant.leaseDurationSeconds, capped }, 'vault token renewed')
      if (!reacquirable) {
        if (capped || !grant.renewable) schedule((expiresAt ?? now()) - now(), async () => { expire() })
        else planNext(grant.leaseDurationSeconds, true)
        return
      }
      if (capped || !grant.renewable) {
        log.info({ method: config.auth, leaseSeconds: grant.leaseDurationSeconds }, 'vault token near its max TTL; logging in again')
        await relogin()
        return
      }
      planNext(grant.leaseDurationSeconds, true)
    } catch (err) {
      const error = err instanceof SecretError ? err : new SecretError('unavailable', 'Vault token renewal failed')
      if (reacquirable) {
        log.warn({ method: config.auth, err: error }, 'vault token renewal failed; logging in again')
        await relogin()
        return
      }
      if (error.kind === 'denied') {
        authenticated = false
        client.setToken(undefined)
        problem = 'Vault refused VAULT_TOKEN on renewal (expired or revoked)'
        terminal = new SecretError('denied', problem)
        log.error({ method: config.auth, err: error }, 'vault token renewal refused')
        return
      }
      problem = `Vault token renewal failing (${error.kind})`
      const untilExpiry = expiresAt === undefined ? Number.POSITIVE_INFINITY : expiresAt - now()
      const delay = Math.min(retryDelay(), untilExpiry)
      log.warn({ method: config.auth, err: error, retryInMs: Math.round(delay) }, 'vault token renewal failed')
      schedule(delay, async () => {
        if (tokenExpired()) expire()
        else await renew()
      })
    }
  }

  return {
    login,

    async ensure () {
      if (closed) throw new SecretError('unavailable', 'Vault auth is closed')
      if (terminal !== undefined) throw terminal
      if (authenticated && !tokenExpired()) return
      if (tokenExpired()) expire()
      if (terminal !== undefined) throw terminal
      await login()
    },

    async recover () {
      if (inflightRecover !== undefined) return await inflightRecover
      inflightRecover = (async () => {
        try {
          await client.lookupSelf()
          return false
        } catch (err) {
          if (!(err instanceof SecretError) || err.kind !== 'denied') throw err
          log.warn({ method: config.auth, tokenFile }, 'vault token no longer accepted')
          authenticated = false
          client.setToken(undefined)
          if (!reacquirable) {
            problem = 'Vault no longer accepts VAULT_TOKEN (expired or revoked); restart with a new token'
            terminal = new SecretError('denied', problem)
            return false
          }
          await login()
          return true
        } finally {
          inflightRecover = undefined
        }
      })()
      return await inflightRecover
    },

    status () {
      if (authenticated && tokenExpired()) expire()
      return { authenticated, problem, expiresAt }
    },

    close () {
      closed = true
      if (timer !== undefined) timers.clearTimer(timer)
      timer = undefined
    }
  }
}
