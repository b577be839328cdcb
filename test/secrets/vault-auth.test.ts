import { describe, expect, it } from 'vitest'
import type { VaultConfig } from '../../src/config.js'
import { createVaultAuth, type VaultAuth } from '../../src/secrets/vault-auth.js'
import type { Timers } from '../../src/time.js'
import { createVaultClient } from '../../src/secrets/vault-client.js'
import { testVaultConfig } from '../support/vault/config.js'
import { startVaultStandIn, type VaultStandIn } from '../support/vault/stand-in.js'
import { useCleanup } from '../support/fixtures.js'
import { captureLogs } from '../support/logs.js'
import { waitFor } from '../support/wait.js'
import { expectSecretError } from './contract.js'

interface ManualTimers {
  timers: Timers
  pending: Array<{ callback: () => void, ms: number }>
  /** Fires the only pending timer (the auth keeps at most one background task). */
  fire: () => void
}

/** Timers the test fires by hand: an 8 h TTL is as quick to test as a 2 s one. */
function manualTimers (): ManualTimers {
  const pending: ManualTimers['pending'] = []
  return {
    pending,
    timers: {
      setTimer: (callback, ms) => {
        const handle = { callback, ms }
        pending.push(handle)
        return handle
      },
      clearTimer: handle => {
        const index = pending.indexOf(handle as ManualTimers['pending'][number])
        if (index !== -1) pending.splice(index, 1)
      }
    },
    fire: () => {
      expect(pending).toHaveLength(1)
      pending.shift()?.callback()
    }
  }
}

describe('vault auth: renewal and re-login', () => {
  const cleanup = useCleanup()

  async function standIn (): Promise<VaultStandIn> {
    const vault = cleanup.add(await startVaultStandIn())
    vault.addAppRole({ roleName: 'broker', roleId: 'role-1', secretId: 'secret-1', tokenTtlSeconds: 600, tokenMaxTtlSeconds: 86_400 })
    return vault
  }

  const approle: Partial<VaultConfig> = { auth: 'approle', roleId: 'role-1', secretId: 'secret-1' }

  function authFor (vault: VaultStandIn, config: Partial<VaultConfig>, options: { now?: () => number, random?: () => number } = {}): { auth: VaultAuth, clock: ManualTimers } {
    const log = captureLogs('silent').log
    const client = cleanup.add(createVaultClient({ addr: vault.url, namespace: undefined, timeoutMs: 1000, log }))
    const clock = manualTimers()
    const auth = cleanup.add(createVaultAuth({
      client,
      log,
      timers: clock.timers,
      now: options.now,
      random: options.random,
      retryBaseMs: 100,
      retryMaxMs: 400,
      config: testVaultConfig(vault.url, { timeoutMs: 1000, ...config })
    }))
    return { auth, clock }
  }

  it('plans the renewal at 2/3 of the TTL, spread ±10 %', async () => {
    const vault = await standIn()
    const delays: number[] = []
    for (const random of [0, 0.5, 0.999999]) {
      const { auth, clock } = authFor(vault, approle, { random: () => random })
      await auth.login()
      expect(clock.pending).toHaveLength(1)
      delays.push(clock.pending[0]!.ms)
    }
    expect(delays[0]).toBeCloseTo(600_000 * (2 / 3) * 0.9, 0)
    expect(delays[1]).toBeCloseTo(600_000 * (2 / 3), 0)
    expect(delays[2]).toBeCloseTo(600_000 * (2 / 3) * 1.1, 0)
  })

  it('renews a renewable token with renew-self and plans the next renewal', async () => {
    const vault = await standIn()
    const { auth, clock } = authFor(vault, approle)
    await auth.login()
    clock.fire()
    await waitFor('the renewal', () => vault.count('POST', 'auth/token/renew-self') === 1 && clock.pending.length === 1)
    expect(vault.count('POST', 'auth/approle/login')).toBe(1)
    expect(auth.status()).toMatchObject({ authenticated: true, problem: undefined })
  })

  it('logs in again when Vault caps the renewal below the requested TTL (the max TTL is near)', async () => {
    const vault = await standIn()
    // token_max_ttl equal to token_ttl: the first renewal can only give back what is left.
    vault.addAppRole({ mount: 'capped', roleName: 'broker', roleId: 'role-2', secretId: 'secret-2', tokenTtlSeconds: 600, tokenMaxTtlSeconds: 600 })
    const { auth, clock } = authFor(vault, { auth: 'approle', roleId: 'role-2', secretId: 'secret-2', approleMount: 'capped' })
    await auth.login()
    clock.fire()
    await waitFor('the second login', () => vault.count('POST', 'auth/capped/login') === 2)
    expect(vault.count('POST', 'auth/token/renew-self')).toBe(1)
    await waitFor('the next renewal to be planned', () => clock.pending.length === 1)
  })

  it('logs in again when renewal fails, retrying with growing delays while Vault is down', async () => {
    const vault = await standIn()
    const { auth, clock } = authFor(vault, approle)
    await auth.login()
    await vault.stop()
    clock.fire()
    await waitFor('a first retry', () => clock.pending.length === 1)
    const first = clock.pending[0]!.ms
    expect(auth.status().problem).toMatch(/could not be renewed/)
    expect(auth.status().authenticated).toBe(true)
    clock.fire()
    await waitFor('a second retry', () => clock.pending.length === 1)
    expect(clock.pending[0]!.ms).toBeGreaterThan(first)
    await vault.start()
    clock.fire()
    await waitFor('the login after the outage', () => vault.count('POST', 'auth/approle/login') === 2)
    await waitFor('the problem to clear', () => auth.status().problem === undefined)
  })

  it('keeps a static token that is not renewable until it expires, then reports it and refuses', async () => {
    const vault = await standIn()
    let now = Date.now()
    const token = vault.createToken({ ttlSeconds: 120, renewable: false })
    const { auth, clock } = authFor(vault, { token }, { now: () => now })
    await auth.login()
    expect(clock.pending).toHaveLength(1)
    expect(clock.pending[0]!.ms).toBeGreaterThan(110_000)
    now += 121_000
    clock.fire()
    expect(auth.status()).toMatchObject({ authenticated: false })
    expect(auth.status().problem).toMatch(/expired/)
    await expectSecretError(auth.ensure(), 'denied')
    expect(vault.count('POST', 'auth/token/renew-self')).toBe(0)
  })

  it('stops renewing a static token whose renewal was capped, and lets it expire', async () => {
    const vault = await standIn()
    let now = Date.now()
    const token = vault.createToken({ ttlSeconds: 600, renewable: true, explicitMaxTtlSeconds: 600 })
    const { auth, clock } = authFor(vault, { token }, { now: () => now })
    await auth.login()
    clock.fire()
    await waitFor('the capped renewal', () => vault.count('POST', 'auth/token/renew-self') === 1 && clock.pending.length === 1)
    // The next task is the expiry, at the end of the capped lease, not another renewal.
    expect(clock.pending[0]!.ms).toBeGreaterThan(590_000)
    now += 601_000
    clock.fire()
    expect(auth.status().problem).toMatch(/expired/)
  })

  it('tells a dead token from a path it may not read (recover)', async () => {
    const vault = await standIn()
    const { auth } = authFor(vault, approle)
    await auth.login()
    expect(await auth.recover()).toBe(false)
    vault.revokeLogins('approle')
    expect(await auth.recover()).toBe(true)
    expect(vault.count('POST', 'auth/approle/login')).toBe(2)
  })

  it('concurrent callers share one login', async () => {
    const vault = await standIn()
    const { auth } = authFor(vault, approle)
    await Promise.all([auth.ensure(), auth.ensure(), auth.ensure()])
    expect(vault.count('POST', 'auth/approle/login')).toBe(1)
  })

  it('while a failed login waits for its retry, callers fail fast: no login of their own, no log line', async () => {
    const vault = await standIn()
    const logs = captureLogs()
    const client = cleanup.add(createVaultClient({ addr: vault.url, namespace: undefined, timeoutMs: 1000, log: logs.log }))
    const clock = manualTimers()
    let now = 1_000_000
    const auth = cleanup.add(createVaultAuth({
      client,
      log: logs.log,
      timers: clock.timers,
      now: () => now,
      random: () => 0.5,
      retryBaseMs: 1000,
      retryMaxMs: 4000,
      config: testVaultConfig(vault.url, { timeoutMs: 1000, ...approle })
    }))
    vault.failWith(503)
    await expectSecretError(auth.login(), 'unavailable')
    const retryInMs = clock.pending[0]!.ms
    expect(retryInMs).toBeGreaterThan(0)
    // The secret reads a refresh engine makes while Vault is down: each used to log in (and log) again.
    for (let i = 0; i < 20; i += 1) {
      now += retryInMs / 40
      await expectSecretError(auth.ensure(), 'unavailable')
    }
    await expectSecretError(auth.recover(), 'unavailable')
    expect(vault.count('POST', 'auth/approle/login')).toBe(1)
    expect(logs.messages().filter(msg => msg === 'vault login failed')).toHaveLength(1)
    // The scheduled retry is the next attempt, and after it the next backoff holds the same way.
    now += retryInMs
    clock.fire()
    await waitFor('the scheduled retry', () => vault.count('POST', 'auth/approle/login') === 2 && clock.pending.length === 1)
    await expectSecretError(auth.ensure(), 'unavailable')
    expect(vault.count('POST', 'auth/approle/login')).toBe(2)
    // Once the backoff's time has come, an on-demand caller may log in itself (the timer may be late).
    vault.failWith(undefined)
    now += clock.pending[0]!.ms
    await auth.ensure()
    expect(vault.count('POST', 'auth/approle/login')).toBe(3)
    expect(auth.status().authenticated).toBe(true)
  })

  it('clears its timer on close', async () => {
    const vault = await standIn()
    const { auth, clock } = authFor(vault, approle)
    await auth.login()
    expect(clock.pending).toHaveLength(1)
    auth.close()
    expect(clock.pending).toHaveLength(0)
    await expectSecretError(auth.ensure(), 'unavailable')
  })
})
