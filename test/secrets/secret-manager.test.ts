import { describe, expect, it } from 'vitest'
import { createSecretManager, type SecretManager } from '../../src/secrets/secret-manager.js'
import { type SecretSource, type SecretSourceHealth, type SecretValue } from '../../src/secrets/types.js'
import { sleep } from '../../src/time.js'
import { useCleanup } from '../support/fixtures.js'
import { captureLogs } from '../support/logs.js'
import { waitFor } from '../support/wait.js'
import { expectSecretError } from './contract.js'
import { SecretError } from '../../src/errors.js'

/** An in-memory source whose reads can be held open and whose availability can be switched off. */
function fakeSource () {
  const versions = new Map<string, SecretValue>()
  const gates: Array<{ path: string, release: () => void }> = []
  const state = { reads: 0, latestCalls: 0, available: true, holdReads: false, closed: false }
  const source: SecretSource = {
    kind: 'file',
    start: async () => {},
    async read (path) {
      state.reads += 1
      if (state.holdReads) await new Promise<void>(resolve => { gates.push({ path, release: resolve }) })
      if (!state.available) throw new SecretError('unavailable', 'source down')
      const value = versions.get(path)
      if (value === undefined) throw new SecretError('not_found', `no ${path}`)
      return value
    },
    async latestVersion (path) {
      state.latestCalls += 1
      if (!state.available) throw new SecretError('unavailable', 'source down')
      const value = versions.get(path)
      if (value === undefined) throw new SecretError('not_found', `no ${path}`)
      return value.version
    },
    health: (): SecretSourceHealth => state.available ? { state: 'ok' } : { state: 'degraded', detail: 'source down' },
    close: async () => { state.closed = true }
  }
  const put = (path: string, secret: string): void => {
    versions.set(path, { version: (versions.get(path)?.version ?? 0) + 1, data: { secret } })
  }
  return { source, state, put, gates, versions }
}

describe('secret manager', () => {
  const cleanup = useCleanup()
  function manager (source: SecretSource, intervalMs = 60_000): SecretManager {
    return cleanup.add(createSecretManager({ source, log: captureLogs('silent').log, intervalMs }))
  }

  it('reads once on first use and serves the held secret afterwards; concurrent first reads share one read', async () => {
    const fake = fakeSource()
    fake.put('secret/a', 'one')
    fake.state.holdReads = true
    const secrets = manager(fake.source)
    const pending = Promise.all([secrets.get('secret/a'), secrets.get('secret/a'), secrets.get('secret/a')])
    await waitFor('the read to start', () => fake.gates.length === 1)
    fake.state.holdReads = false
    fake.gates.splice(0).forEach(gate => { gate.release() })
    const values = await pending
    expect(values.map(value => value.data.secret)).toEqual(['one', 'one', 'one'])
    expect(fake.state.reads).toBe(1)
    await secrets.get('secret/a')
    expect(fake.state.reads).toBe(1)
    expect(secrets.peek('secret/a')?.version).toBe(1)
  })

  it('does not hold a failed first read: the next get tries again', async () => {
    const fake = fakeSource()
    const secrets = manager(fake.source)
    await expectSecretError(secrets.get('secret/a'), 'not_found')
    fake.put('secret/a', 'one')
    expect((await secrets.get('secret/a')).data.secret).toBe('one')
  })

  it('reread forces a fresh read, shared by concurrent callers, and notifies a new version', async () => {
    const fake = fakeSource()
    fake.put('secret/a', 'one')
    const secrets = manager(fake.source)
    await secrets.get('secret/a')
    const rotations: Array<[string, number]> = []
    secrets.onRotation((path, version) => { rotations.push([path, version]) })
    fake.put('secret/a', 'two')
    const [first, second] = await Promise.all([secrets.reread('secret/a'), secrets.reread('secret/a')])
    expect(first.data.secret).toBe('two')
    expect(second).toBe(first)
    expect(fake.state.reads).toBe(2)
    expect(rotations).toEqual([['secret/a', 2]])
    expect((await secrets.get('secret/a')).data.secret).toBe('two')
  })

  it('reread throws when the source is down, and get keeps serving the held secret', async () => {
    const fake = fakeSource()
    fake.put('secret/a', 'one')
    const secrets = manager(fake.source)
    await secrets.get('secret/a')
    fake.state.available = false
    await expectSecretError(secrets.reread('secret/a'), 'unavailable')
    expect((await secrets.get('secret/a')).data.secret).toBe('one')
    expect(secrets.health()).toEqual({ state: 'degraded', detail: 'source down' })
  })

  it('a read that started earlier never replaces a newer one that finished first', async () => {
    const fake = fakeSource()
    fake.put('secret/a', 'one')
    fake.state.holdReads = true
    const secrets = manager(fake.source)
    const slowFirst = secrets.get('secret/a')
    await waitFor('the first read to start', () => fake.gates.length === 1)
    const slowGate = fake.gates.shift()
    fake.put('secret/a', 'two')
    fake.state.holdReads = false
    expect((await secrets.reread('secret/a')).data.secret).toBe('two')
    // The first read resumes now and sees version 2 too, but even an older answer must not win.
    fake.versions.set('secret/a', { version: 1, data: { secret: 'one' } })
    slowGate?.release()
    await slowFirst
    expect(secrets.peek('secret/a')?.data.secret).toBe('two')
  })

  describe('periodic check', () => {
    it('checks every path in use, reads only on a new version, and notifies each listener once', async () => {
      const fake = fakeSource()
      fake.put('secret/a', 'one')
      fake.put('secret/b', 'bee')
      const secrets = manager(fake.source, 50)
      await secrets.get('secret/a')
      await secrets.get('secret/b')
      const seen: string[] = []
      secrets.onRotation(() => { throw new Error('a broken listener') })
      secrets.onRotation((path, version) => { seen.push(`${path}@${version}`) })
      await waitFor('a few checks', () => fake.state.latestCalls >= 4)
      expect(fake.state.reads).toBe(2)
      fake.put('secret/a', 'two')
      await waitFor('the rotation', () => seen.length === 1)
      expect(seen).toEqual(['secret/a@2'])
      expect(fake.state.reads).toBe(3)
      expect((await secrets.get('secret/a')).data.secret).toBe('two')
    })

    it('keeps serving and keeps checking while the source is unavailable, then picks up a rotation', async () => {
      const fake = fakeSource()
      fake.put('secret/a', 'one')
      const secrets = manager(fake.source, 50)
      await secrets.get('secret/a')
      fake.state.available = false
      const callsBefore = fake.state.latestCalls
      await waitFor('checks during the outage', () => fake.state.latestCalls >= callsBefore + 3)
      expect((await secrets.get('secret/a')).data.secret).toBe('one')
      fake.put('secret/a', 'two')
      fake.state.available = true
      await waitFor('the rotation after the outage', () => secrets.peek('secret/a')?.version === 2)
    })

    it('check() can be called directly and never throws', async () => {
      const fake = fakeSource()
      fake.put('secret/a', 'one')
      const secrets = manager(fake.source)
      await secrets.get('secret/a')
      fake.state.available = false
      await expect(secrets.check()).resolves.toBeUndefined()
    })
  })

  it('close stops the checks, closes the source and refuses further reads', async () => {
    const fake = fakeSource()
    fake.put('secret/a', 'one')
    const secrets = manager(fake.source, 20)
    await secrets.get('secret/a')
    await secrets.close()
    const calls = fake.state.latestCalls
    await sleep(100)
    expect(fake.state.latestCalls).toBe(calls)
    expect(fake.state.closed).toBe(true)
    await expectSecretError(secrets.get('secret/a'), 'unavailable')
  })
})
