import { describe, expect, it } from 'vitest'
import type { Lease } from '../../src/store/types.js'
import { freePort } from '../support/ports.js'
import { useCleanup } from '../support/fixtures.js'
import { spawnRedisServer } from '../support/redis-server.js'
import { captureLogs } from '../support/logs.js'
import { sleep } from '../../src/time.js'
import { waitFor } from '../support/wait.js'
import { expectStoreErrorWithin, makeGrant, randomGrantKey, recordGrants } from './helpers.js'
import { createRedisWorld } from './redis-world.js'
import { startTcpProxy } from '../support/tcp-proxy.js'

// Each test runs its own redis-server (these tests kill it), reached over loopback only.
describe('redis grant store when Redis fails', () => {
  const cleanup = useCleanup()

  it('fails fast with a StoreError while Redis is down, then reconnects and resubscribes by itself', async () => {
    const server = cleanup.add(await spawnRedisServer())
    const world = cleanup.add(await createRedisWorld({ url: server.url, deleteKeys: false }))
    const logs = captureLogs()
    const writer = await world.openWith({ log: logs.log })
    const reader = await world.openWith({ log: logs.log })
    const key = randomGrantKey()
    const lease = await writer.acquireLease(key, 10_000) as Lease
    const grant = makeGrant()
    expect(await writer.putGrant(lease, grant)).toBe(true)

    await server.kill()
    await expectStoreErrorWithin(writer.get(key), 1500, 'unavailable')
    await expectStoreErrorWithin(writer.acquireLease(key, 10_000), 1500, 'unavailable')
    await expectStoreErrorWithin(writer.putGrant(lease, makeGrant()), 1500, 'unavailable')
    await expectStoreErrorWithin(writer.deleteGrant(lease), 1500, 'unavailable')
    await expectStoreErrorWithin(writer.releaseLease(lease), 1500, 'unavailable')
    await expectStoreErrorWithin(reader.get(key), 1500, 'unavailable')
    expect((await writer.health()).state).toBe('down')
    expect((await reader.health()).state).toBe('down')

    await server.restart()
    await waitFor('the writer is up again', async () => (await writer.health()).state === 'up', { timeout: 10_000 })
    await reader.ready(10_000)
    expect((await reader.health()).state).toBe('up')

    // The restarted server kept nothing (no persistence); the stores work on it as on a new Redis.
    expect(await reader.get(key)).toBeNull()
    const seen = recordGrants(reader)
    const again = await writer.acquireLease(key, 10_000) as Lease
    expect(again).not.toBeNull()
    const next = makeGrant()
    expect(await writer.putGrant(again, next)).toBe(true)
    await waitFor('the reader heard of the write after resubscribing', () => seen.keys.includes(key), { timeout: 3000 })
    expect((await reader.get(key))?.grant).toEqual(next)

    const messages = logs.messages()
    expect(messages).toContain('redis connection lost; reconnecting')
    expect(messages).toContain('redis connection restored')
    for (const token of [grant.accessToken, grant.refreshToken, next.accessToken, next.refreshToken]) {
      expect(logs.text()).not.toContain(token)
    }
  })

  it('times out instead of hanging when Redis stops answering, and recovers when it answers again', async () => {
    const server = cleanup.add(await spawnRedisServer())
    const proxy = cleanup.add(await startTcpProxy({ port: server.port }))
    const world = cleanup.add(await createRedisWorld({ url: server.url }))
    const logs = captureLogs()
    const store = await world.openWith({ url: `redis://127.0.0.1:${proxy.port}`, log: logs.log })
    const key = randomGrantKey()
    expect(await store.get(key)).toBeNull()

    proxy.freeze()
    const err = await expectStoreErrorWithin(store.get(key), 1500, 'unavailable')
    expect(err.message).toBe('redis command timed out')
    await expectStoreErrorWithin(store.acquireLease(key, 10_000), 1500, 'unavailable')
    const started = Date.now()
    expect((await store.health()).state).toBe('down')
    expect(Date.now() - started).toBeLessThan(1000)
    // Stay silent past socketTimeout (3 s after the first unanswered command): the store must drop the
    // dead connection and dial again; the new connection's handshake then hangs on the silent peer.
    await sleep(1500)
    // A call now must not be queued to run once the peer answers: its caller will have given up by then,
    // and a late SET NX would hold a lease nobody knows about, blocking every replica's refresh.
    const late = randomGrantKey()
    await expectStoreErrorWithin(store.acquireLease(late, 60_000), 1500, 'unavailable')
    proxy.thaw()

    await waitFor('the store answers again', async () => await store.get(key).then(found => found === null, () => false), { timeout: 10_000 })
    await store.ready(10_000)
    expect((await store.health()).state).toBe('up')
    expect(logs.text()).toContain('Socket timeout')
    await sleep(100)
    const raw = world.raw()
    expect(await raw.exists(`${world.prefix}:{${late}}:lease`, `${world.prefix}:{${key}}:lease`)).toBe(0)
    expect(await store.acquireLease(late, 60_000)).not.toBeNull()
  })

  it('tells a replica about grants written while its subscriber was cut off, once it is back', async () => {
    const server = cleanup.add(await spawnRedisServer())
    const proxy = cleanup.add(await startTcpProxy({ port: server.port }))
    const world = cleanup.add(await createRedisWorld({ url: server.url }))
    const writer = await world.open()
    const cutOff = await world.openWith({ url: `redis://127.0.0.1:${proxy.port}` })
    const key = randomGrantKey()
    // The replica has dealt with this key before (it read it), as a serving replica would have.
    expect(await cutOff.get(key)).toBeNull()
    const seen = recordGrants(cutOff)

    await proxy.refuse()
    await waitFor('the replica notices', async () => (await cutOff.health()).state === 'down', { timeout: 3000 })
    const lease = await writer.acquireLease(key, 10_000) as Lease
    expect(await writer.putGrant(lease, makeGrant())).toBe(true)
    await sleep(200)
    expect(seen.keys).toEqual([])

    await proxy.accept()
    await cutOff.ready(10_000)
    await waitFor('the missed write was announced', () => seen.keys.includes(key), { timeout: 3000 })
    expect((await cutOff.get(key))?.fence).toBe(lease.fence)
  })

  it('waits only briefly for a Redis that never answered, then reports it unavailable', async () => {
    const world = cleanup.add(await createRedisWorld({ url: `redis://127.0.0.1:${await freePort()}`, deleteKeys: false }))
    const store = await world.openWith({ ready: false })
    await expectStoreErrorWithin(store.get(randomGrantKey()), 1500, 'unavailable')
    await expect(store.ready(300)).rejects.toMatchObject({ name: 'StoreError', kind: 'unavailable' })
    expect((await store.health()).state).toBe('down')
  })
})
